package ingest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/statsbridge/statsbridge/throttle"
)

// lookupGroup resolves unixgram_group: a group name or a numeric gid; ""
// is the process's group.
func lookupGroup(group string) (int, error) {
	if group == "" {
		return os.Getegid(), nil
	}
	if gid, err := strconv.Atoi(group); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("unixgram_group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}

// listenUnixgram binds a unixgram socket at path. A socket file left behind
// by an earlier run is removed first; any other kind of file is an error.
// The file gets its group before its mode, so that the group's permission
// never applies to another group.
func listenUnixgram(path string, mode os.FileMode, gid, readBuffer int, logger *slog.Logger) (*net.UnixConn, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	if err := setOwnership(path, mode, gid); err != nil {
		c.Close()
		os.Remove(path)
		return nil, err
	}
	effective := setConnReadBuffer(c, readBuffer, logger)
	logger.Info("statsd unixgram socket", "path", path, "mode", fmt.Sprintf("%04o", mode), "gid", gid, "read_buffer", effective)
	return c, nil
}

// setOwnership gives a socket file its group and mode.
func setOwnership(path string, mode os.FileMode, gid int) error {
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("unixgram_group: %w", err)
	}
	return os.Chmod(path, mode)
}

// serveUnixgram reads datagrams until ctx is done, then drains the socket
// and removes its file, unless a newer Server took the socket over: then it
// leaves it as it is.
func serveUnixgram(ctx context.Context, sock *unixSocket, r *Reader, failed *throttle.Event) {
	c, path := sock.UnixConn, sock.path
	c.SetReadDeadline(time.Time{}) // a Server before may have stopped its reader so
	defer func() {
		if !sock.taken.Load() {
			os.Remove(path)
			c.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, maxDatagram)
	draining := false
	var deadline time.Time
	for {
		n, _, flags, _, err := c.ReadMsgUnix(buf, nil)
		if n > 0 {
			if flags&unix.MSG_TRUNC != 0 {
				r.datagrams++
				r.tooLong(buf[:n])
			} else {
				r.Datagram(buf[:n], netip.Addr{})
			}
			r.Flush()
		}
		if err == nil {
			if draining {
				if time.Now().After(deadline) {
					return
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			}
			continue
		}
		if ctx.Err() == nil {
			if !isTimeout(err) && !errors.Is(err, net.ErrClosed) {
				failed.Log("unixgram", path, "err", err)
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		if draining || sock.taken.Load() {
			return
		}
		// Stopped: read what is queued, waiting for nothing new.
		draining = true
		deadline = time.Now().Add(drainTime)
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	}
}
