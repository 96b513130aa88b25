"""tlswrap: terminate implicit TLS for mail services and relay to the plaintext daemon.

This package's top level imports nothing heavy: inetd mode starts a process per connection, so
every module pulls in trio or OpenSSL only when it needs them.
"""

__version__ = "0.1.0"
