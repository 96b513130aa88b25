"""wrapcert: certificates for a TLS wrapper, the ``openssl req`` way, with no openssl binary.

Pure modules (text or bytes in, values out): :mod:`.opensslconf` (the config reader),
:mod:`.reqconf` and :mod:`.extconf` (what ``[req]`` and extension sections mean), :mod:`.dn`
(attribute names, ``-subj``) and :mod:`.x509text` (``openssl x509`` output). :mod:`.build` makes
keys and certificates with ``cryptography``; :mod:`.files` writes them safely. :mod:`.cli` parses
the ``wrapcert`` command line and hands it to :mod:`.commands`; imports point that way only. The
proxy never imports this package.
"""
