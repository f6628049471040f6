"""The vpnhub client: profiles (TOML and Cisco .pcf), credentials and the connection driver."""
