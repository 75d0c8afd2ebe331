"""Byte-identical copies of modules whose source of truth lives elsewhere in the repository
(``build.py`` refreshes them; tests/test_addon_vendor.py checks them). Never edit them here."""
