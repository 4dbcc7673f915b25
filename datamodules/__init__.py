"""LightningDataModules, one per data family."""
