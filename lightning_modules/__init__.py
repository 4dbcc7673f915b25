"""One LightningModule per method family, plus the nets they train (``nets/``)."""
