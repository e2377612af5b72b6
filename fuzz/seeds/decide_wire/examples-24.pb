
iam.role.requestV
aliceacmesupport"
timezoneEurope/Berlin"!
usual_countries2
DE
FR#
s-5urn:stepup:aal3hwk"‚©¥Ø"
d-laptopweb*&
203.0.113.7DEø"

anonymizer 2
role
roleadminB ©¥Ø