
environments.deleteV
aliceacmesupport"
timezoneEurope/Berlin"!
usual_countries2
DE
FR#
s-1urn:stepup:aal1pwd"êç•ÿ"
d-laptopweb*
203.0.113.7DE¯20
environmentstaging
environment	stagingB†©•ÿ