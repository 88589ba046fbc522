"""The web playground: a small client of the public API served at / (PLAYGROUND)."""
