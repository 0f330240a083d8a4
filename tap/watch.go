package tap

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Options say where statsbridge tap connects and how it shows what arrives.
type Options struct {
	// URL is the relay's tap endpoint, with its query (the filter).
	URL string
	Out io.Writer
	// Size, when set, reads the terminal's size, and Watch draws the live
	// top view; without it, Watch prints a line for each name as it
	// arrives.
	Size func() (width, height int)
	// Redraw is how often the top view is drawn; 0 means every second.
	Redraw time.Duration
}

// ErrRefused is the relay's answer to an address not in http.admin_allow.
var ErrRefused = errors.New("the relay refuses this address: it is not in its http.admin_allow")

// Watch connects to the relay and shows what arrives until ctx is done (nil)
// or the relay ends the stream (an error).
func Watch(ctx context.Context, o Options) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("cannot reach the relay (is it running, with http.listen set?): %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return ErrRefused
	case resp.StatusCode != http.StatusOK:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("the relay answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	events := make(chan Event, eventsSize)
	readErr := make(chan error, 1)
	go func() { readErr <- read(ctx, resp.Body, events) }()
	if o.Size == nil {
		return printLines(ctx, o.Out, events, readErr)
	}
	return drawTop(ctx, o, events, readErr)
}

// read decodes the stream into events until it ends or ctx is done.
func read(ctx context.Context, body io.Reader, events chan<- Event) error {
	defer close(events)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("the relay sent something that is not a tap event: %w", err)
		}
		select {
		case events <- ev:
		case <-ctx.Done():
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the relay ended the stream (it stopped?)")
}

// printLines writes a line for each name and bad line.
func printLines(ctx context.Context, out io.Writer, events <-chan Event, readErr <-chan error) error {
	w := bufio.NewWriter(out)
	defer w.Flush()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				w.Flush()
				if ctx.Err() != nil {
					return nil
				}
				return <-readErr
			}
			switch {
			case ev.Name != nil:
				fmt.Fprintln(w, ev.Name.String())
			case ev.Bad != nil:
				fmt.Fprintln(w, ev.Bad.String())
			}
			if len(events) == 0 {
				if err := w.Flush(); err != nil {
					return err // the reader went away (head, a closed pipe)
				}
			}
		}
	}
}

// String is the plain line for a name: what was sent, and what it became.
func (n *Name) String() string {
	var b strings.Builder
	b.WriteString(n.Sent())
	b.WriteString(" -> ")
	if n.Refused != "" {
		fmt.Fprintf(&b, "refused (%s): ", n.Refused)
	}
	fmt.Fprintf(&b, "%s %s (%s)", n.Series(), n.FamilyType, n.Rule)
	if n.Weight > 1.0001 {
		fmt.Fprintf(&b, " [sampled: 1 of %.3g]", n.Weight)
	}
	return b.String()
}

// Sent is the name as sent, with its type and tags.
func (n *Name) Sent() string {
	s := n.Name + "|" + n.Type
	if n.Tags != "" {
		s += "|#" + n.Tags
	}
	return s
}

// Series is the family and labels.
func (n *Name) Series() string {
	if n.Labels == "{}" {
		return n.Family
	}
	return n.Family + n.Labels
}

// String is the plain line for a bad line.
func (b *BadLine) String() string { return fmt.Sprintf("bad line (%s): %s", b.Reason, b.Line) }
