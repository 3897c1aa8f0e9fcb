"""Source providers: one package each (verify, parse, pin, report back)."""
