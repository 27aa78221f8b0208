"""QGIS side of ToPT: provider, algorithms and layer adapters (thin by design)."""
