package ingest

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// socketInode identifies a socket in /proc/net/*.
func socketInode(c syscall.Conn) uint64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var st syscall.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return 0
	}
	return st.Ino
}

// UDPKernelStats are what Linux reports of the UDP sockets: datagrams it
// dropped because a socket's buffer was full, and bytes waiting to be read.
type UDPKernelStats struct {
	Drops  uint64
	Queued uint64
}

// UDPKernel reads the kernel's counters for the server's UDP sockets from
// /proc/net/udp and /proc/net/udp6. It reports false where Linux does not
// expose them.
func (s *Server) UDPKernel() (UDPKernelStats, bool) {
	inodes := map[uint64]bool{}
	for _, u := range s.udp {
		if u.inode != 0 {
			inodes[u.inode] = true
		}
	}
	var st UDPKernelStats
	found := false
	for _, path := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		ok := addProcNetUDP(path, inodes, &st)
		found = found || ok
	}
	return st, found
}

// addProcNetUDP adds the drops and receive queues of the listed sockets.
// Columns: sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout
// inode ref pointer drops.
func addProcNetUDP(path string, inodes map[uint64]bool, st *UDPKernelStats) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 13 {
			continue
		}
		inode, err := strconv.ParseUint(string(fields[9]), 10, 64)
		if err != nil || !inodes[inode] {
			continue
		}
		if drops, err := strconv.ParseUint(string(fields[12]), 10, 64); err == nil {
			st.Drops += drops
		}
		if _, rx, ok := bytes.Cut(fields[4], []byte(":")); ok {
			if q, err := strconv.ParseUint(string(rx), 16, 64); err == nil {
				st.Queued += q
			}
		}
	}
	return true
}
