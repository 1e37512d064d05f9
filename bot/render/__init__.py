"""Pure renderers: typed core results in, Block Kit messages out. No I/O here."""
