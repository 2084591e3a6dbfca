"""Fault injection for the exactly-once proof: refused calls, dropped connections, lost
responses (a proxy in front of moto's server), crashes between writes and timeouts."""
