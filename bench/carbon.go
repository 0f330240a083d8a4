package main

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"sync"
)

// carbonSink is a carbon plaintext listener that counts what it is sent:
// the lines, and the sum of the values of the bench counters (paths
// layout, delta counters: each flush writes what a counter gained).
type carbonSink struct {
	l        net.Listener
	mu       sync.Mutex
	lines    int64
	counters float64
	wg       sync.WaitGroup
}

func startCarbon() (*carbonSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &carbonSink{l: l}
	c.wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.wg.Go(func() { c.read(conn) })
		}
	})
	return c, nil
}

func (c *carbonSink) addr() string { return c.l.Addr().String() }

var benchCounterPath = []byte("bench.c.")

func (c *carbonSink) read(conn net.Conn) {
	defer conn.Close()
	sc := bufio.NewScanner(conn)
	sc.Buffer(nil, 1<<20)
	var lines int64
	var counters float64
	for sc.Scan() {
		lines++
		f := bytes.Fields(sc.Bytes())
		if len(f) == 3 && bytes.HasPrefix(f[0], benchCounterPath) {
			v, _ := strconv.ParseFloat(string(f[1]), 64)
			counters += v
		}
		if lines%1024 == 0 {
			c.add(lines, counters)
			lines, counters = 0, 0
		}
	}
	c.add(lines, counters)
}

func (c *carbonSink) add(lines int64, counters float64) {
	c.mu.Lock()
	c.lines += lines
	c.counters += counters
	c.mu.Unlock()
}

// got returns the lines and the counter sum received so far.
func (c *carbonSink) got() (int64, float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines, c.counters
}

// close stops listening; connections end when their sender closes them.
func (c *carbonSink) close() { c.l.Close() }
