
account.email.changeM
aliceacme"
timezoneEurope/Berlin"!
usual_countries2
DE
FR#
s-1urn:stepup:aal1pwd"êç•ÿ"
d-laptopweb*
203.0.113.7DEB†©•ÿ