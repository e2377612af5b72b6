
orders.listV
aliceacmesupport"
timezoneEurope/Berlin"!
usual_countries2
DE
FR#
s-5urn:stepup:aal3hwk"‚©¥Ø"
d-laptopweb*
175.45.176.1KPøB ©¥Ø