"""Plain ``nn.Module`` networks, free of Lightning."""
