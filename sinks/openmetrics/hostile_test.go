package openmetrics

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/statsbridge/statsbridge/model/modeltest"
)

// TestHostileTagsNeverBreakTheExposition: tags that collide with the
// labels an exposition adds (le, quantile), with each other once
// sanitised, or with reserved names still give a page that Prometheus'
// parser reads and a scrape accepts: no series with two labels of one
// name, le only on buckets, quantile only on quantiles.
func TestHostileTagsNeverBreakTheExposition(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, modeltest.HostileModel(t), Options{}); err != nil {
		t.Fatal(err)
	}
	mustParseAsOpenMetrics(t, b.Bytes())
	p, err := textparse.New(b.Bytes(), "application/openmetrics-text", labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var family string
	var typ model.MetricType
	series := 0
	for {
		entry, err := p.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch entry {
		case textparse.EntryType:
			name, mt := p.Type()
			family, typ = string(name), mt
		case textparse.EntrySeries:
			series++
			var ls labels.Labels
			p.Labels(&ls)
			if problem := scrapeProblem(family, typ, ls); problem != "" {
				t.Errorf("%s: %s", ls, problem)
			}
		}
	}
	if series < 40 {
		t.Errorf("only %d series:\n%s", series, b.String())
	}
}

// scrapeProblem says why Prometheus would refuse or misread a scraped
// series of a family, or "".
func scrapeProblem(family string, typ model.MetricType, ls labels.Labels) string {
	if dup, ok := ls.HasDuplicateLabelNames(); ok {
		return "duplicate label " + dup
	}
	name := ls.Get(labels.MetricName)
	problem := ""
	ls.Range(func(l labels.Label) {
		if l.Name != labels.MetricName && strings.HasPrefix(l.Name, "__") {
			problem = "reserved label " + l.Name
		}
	})
	switch {
	case problem != "":
		return problem
	case typ == model.MetricTypeHistogram && (name == family+"_bucket") != ls.Has("le"):
		return "le on a histogram's series other than its buckets, or a bucket without"
	case typ == model.MetricTypeSummary && (name == family) != ls.Has("quantile"):
		return "quantile on a summary's series other than its quantiles, or a quantile without"
	}
	return ""
}
