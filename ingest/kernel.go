package ingest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
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
	found := scanProcNetUDP(func(row procNetUDPRow) {
		if !inodes[row.inode] {
			return
		}
		st.Drops += row.drops
		st.Queued += row.queued
	})
	return st, found
}

// procNetUDPRow is what statsbridge reads of a line of /proc/net/udp.
type procNetUDPRow struct {
	local  netip.AddrPort
	inode  uint64
	drops  uint64
	queued uint64 // rx_queue: bytes waiting to be read
}

// scanProcNetUDP calls each for every UDP socket of the network namespace,
// from /proc/net/udp and /proc/net/udp6; false where Linux has neither.
// Columns: sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout
// inode ref pointer drops.
func scanProcNetUDP(each func(procNetUDPRow)) bool {
	found := false
	for _, path := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		found = true
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			fields := bytes.Fields(sc.Bytes())
			if len(fields) < 13 {
				continue
			}
			var row procNetUDPRow
			var ok bool
			if row.local, ok = parseProcNetAddr(fields[1]); !ok {
				continue
			}
			if row.inode, err = strconv.ParseUint(string(fields[9]), 10, 64); err != nil {
				continue
			}
			row.drops, _ = strconv.ParseUint(string(fields[12]), 10, 64)
			if _, rx, ok := bytes.Cut(fields[4], []byte(":")); ok {
				row.queued, _ = strconv.ParseUint(string(rx), 16, 64)
			}
			each(row)
		}
		f.Close()
	}
	return found
}

// parseProcNetAddr reads a local_address of /proc/net/udp{,6}: the address
// as 32-bit words in hex, each in the host's byte order, ":" and the port
// in hex.
func parseProcNetAddr(b []byte) (netip.AddrPort, bool) {
	hexAddr, hexPort, ok := bytes.Cut(b, []byte(":"))
	if !ok || (len(hexAddr) != 8 && len(hexAddr) != 32) {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(string(hexPort), 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	var raw [16]byte
	for i := 0; i < len(hexAddr)/8; i++ {
		word, err := strconv.ParseUint(string(hexAddr[8*i:8*i+8]), 16, 32)
		if err != nil {
			return netip.AddrPort{}, false
		}
		binary.NativeEndian.PutUint32(raw[4*i:], uint32(word))
	}
	addr := netip.AddrFrom16(raw)
	if len(hexAddr) == 8 {
		addr = netip.AddrFrom4([4]byte(raw[:4]))
	}
	return netip.AddrPortFrom(addr, uint16(port)), true
}

// udpSocketsOn lists the UDP sockets bound to port: false where Linux does
// not expose them.
func udpSocketsOn(port uint16) ([]procNetUDPRow, bool) {
	var rows []procNetUDPRow
	found := scanProcNetUDP(func(row procNetUDPRow) {
		if row.local.Port() == port {
			rows = append(rows, row)
		}
	})
	return rows, found
}

// foreignUDPSockets returns the inodes of sockets, not among socks, that
// take datagrams addressed to socks' address: a SO_REUSEPORT group shared
// with another process, or a more specific address on our port.
func foreignUDPSockets(socks []*udpSocket) []uint64 {
	if len(socks) == 0 {
		return nil
	}
	local, ok := socks[0].bound.(*net.UDPAddr)
	if !ok {
		return nil
	}
	ours := map[uint64]bool{}
	for _, s := range socks {
		ours[s.inode] = true
	}
	ourAddr, _ := netip.AddrFromSlice(local.IP)
	rows, _ := udpSocketsOn(uint16(local.Port))
	var foreign []uint64
	for _, row := range rows {
		if !ours[row.inode] && takesTrafficFor(row.local.Addr(), ourAddr) {
			foreign = append(foreign, row.inode)
		}
	}
	return foreign
}

// takesTrafficFor reports whether a socket bound to theirs, on our port,
// receives datagrams that a socket bound to ours would: the same address
// (as one SO_REUSEPORT group), or a specific address within our wildcard
// (the kernel prefers it). An IPv4 wildcard receives no IPv6; an IPv6
// wildcard, dual-stack as Go binds it, receives both.
func takesTrafficFor(theirs, ours netip.Addr) bool {
	theirs, ours = theirs.Unmap(), ours.Unmap()
	switch {
	case theirs == ours:
		return true
	case ours.IsUnspecified() && !theirs.IsUnspecified():
		return ours.Is6() || theirs.Is4()
	}
	return false
}
