from vpnhub.cli import main

raise SystemExit(main())
