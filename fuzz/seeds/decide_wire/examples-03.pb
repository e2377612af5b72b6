
account.email.changeV
aliceacmesupport"
timezoneEurope/Berlin"!
usual_countries2
DE
FR(
s-3urn:stepup:aal2pwdotp"˜›¥Ø"
d-laptopweb*
203.0.113.7DEøB ©¥Ø