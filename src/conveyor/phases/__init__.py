"""Phase governance: the catalog of phases, their SQL files, and the runner that applies them."""
