"""What several test folders share: the CLI runner, servers and agents in subprocesses, database
servers, repositories driven in-process, small disks. Imported as `tests.support.<module>`."""
