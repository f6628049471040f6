-- vpnhub cluster schema 2 (issue 17; docs/MANAGER.md "The Cluster page"): which
-- member holds the virtual address (the VRRP master), as each member finds it
-- at its heartbeat, so that every member's manager can say who the master is.
ALTER TABLE members ADD COLUMN holds_virtual_address boolean NOT NULL DEFAULT false;
