package events

// storageKinds are the kinds of the storage producers (smart, zfs, btrfs,
// mdraid, fs, path, postgres). Each entry needs a Go type and a schema file.
// Every one of them is published by an agent on evt.<kind>.<object>.
func storageKinds() []Kind {
	return []Kind{
		{Name: "smart", Origin: FromAgent, Doc: "a drive's SMART health (object: device) with a verdict", New: func() any { return new(SMART) }},
		{Name: "zfs", Origin: FromAgent, Doc: "a ZFS pool's health, capacity, vdev errors and scrub (object: pool) with a verdict", New: func() any { return new(ZFSPool) }},
		{Name: "btrfs", Origin: FromAgent, Doc: "a btrfs filesystem's device error counters and allocation (object: fsid) with a verdict", New: func() any { return new(Btrfs) }},
		{Name: "mdraid", Origin: FromAgent, Doc: "a Linux md array's state, members and sync (object: md device) with a verdict", New: func() any { return new(MDRaid) }},
		{Name: "fs", Origin: FromAgent, Doc: "a mounted filesystem's size, use and inodes (object: mount point) with a verdict", New: func() any { return new(Filesystem) }},
		{Name: "path", Origin: FromAgent, Doc: "the total size of a listed directory tree (object: path)", New: func() any { return new(PathUsage) }},
		{Name: "postgres", Origin: FromAgent, Doc: "a PostgreSQL database's size and largest relations (object: database)", New: func() any { return new(Postgres) }},
	}
}
