"""The SMS channel. Today it holds `parts` (how many SMS parts a text takes, GSM-7 or UCS-2, as
Twilio counts them); the Twilio adapter will join it here."""
