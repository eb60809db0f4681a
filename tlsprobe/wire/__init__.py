"""Sans-IO wire parsers: bytes in, typed records out."""
