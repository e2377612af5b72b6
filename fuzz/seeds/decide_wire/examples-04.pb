
account.mfa.removeV
aliceacmesupport"
timezoneEurope/Berlin"!
usual_countries2
DE
FR-
s-4urn:okta:loa:2fa:anypwdswk"ä¨¥Ø"
d-laptopweb*
203.0.113.7DEøB ©¥Ø