
environments.deleteV
aliceacmesupport"
timezoneEurope/Berlin"!
usual_countries2
DE
FR#
s-5urn:stepup:aal3hwk"‚©¥Ø"
d-laptopweb*
203.0.113.7DEø23
environmentprod-eu
environment
productionB¶ª¥Ø