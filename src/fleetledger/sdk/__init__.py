"""The HTTP SDK: record to a fleetledger server through a disk spool."""
