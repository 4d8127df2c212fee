"""The SASV toolkit's installed name. In a checkout this package holds only the console scripts' entry points
(`sasv.cli`); installed from a wheel, it holds the whole toolkit (`sasv.common`, `sasv.data`, ..., `sasv.main`):
setup.py says how the wheel mirrors the checkout, docs/design.md why."""
