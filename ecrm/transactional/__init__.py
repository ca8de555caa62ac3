"""Transactional messages: one message to one person now (`POST /v1/messages`), a send of kind
`transactional` on the neutral send unit, on its own queue so it never waits behind a campaign."""
