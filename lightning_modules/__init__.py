"""LightningModules and the nets they train: one subpackage per method family (``gnn/``,
``lingcn/``, ``relu_budget/``, ``snn/``), and the parts families share at this level."""
