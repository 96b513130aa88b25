"""The inetd fast path: one connection served without trio, pyOpenSSL or ``logging``.

inetd starts a process per connection, so what that process imports is paid per connection:
the full path (trio, pyOpenSSL, cryptography.x509, logging) costs ~170 ms before the first
byte, the fast path ~10 ms over the interpreter. ``entry.serve_inetd`` serves the connection
when the service uses only what the fast path implements; every other start goes the full
way (see the README's inetd section for the list). Modules: ``spec`` reads the config,
``access`` applies hosts.allow/hosts.deny with the one rule engine (``tcpwrappers``),
``backend`` opens the plaintext side, ``relay`` moves the bytes, ``log`` writes the lines,
``entry`` runs them in ``pipeline.serve_one``'s order; TLS is ``tlswrap.opensslraw``.
"""
