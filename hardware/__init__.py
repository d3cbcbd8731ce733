"""Everything that touches a device; knows nothing about payments beyond APDUs.

The PC/SC part:
- `reader` / `session`: PC/SC readers (list, choose, wait for a tap) and a card
  connection whose `transmit` handles 61xx and 6Cxx; `errors`: the typed errors.
- `apdu`: pure command-APDU helpers; `reader_commands`: ACR122U/ACR1252U/PN532 bytes.
- `pcscd`: a private pcscd with a vpcd reader (tests, bench, demo).
- `vcard` / `card_apps`: the virtual card runtime on vpcd and the built-in test cards.
- `doctor` / `cli`: `pos reader list|doctor`, `pos card insert|remove`.
"""
