"""The lab: the Cisco document's network in Linux namespaces, with real peers.

- ``topology``: build/remove the namespaces (clients behind an nft PAT, the
  "internet", the concentrator, the private LAN); run commands and background
  processes in its hosts; PAT conntrack table; LAN services; ping/wait helpers.
- ``peers``: vpnc and strongSwan charon (concentrator or IKEv1 XAUTH client),
  configured from ``templates/`` and the lab's own ``vpnc-script-lab``.
- ``procs``: records of the processes the lab starts, so that only those are
  ever stopped, also after a crash.
"""
