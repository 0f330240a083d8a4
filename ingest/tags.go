package ingest

import "bytes"

// trueValue is the value of a bare DogStatsD tag ("|#canary"), as Telegraf
// does: an empty value would vanish in Prometheus and be refused by carbon.
var trueValue = []byte("true")

// parseDogTags reads a DogStatsD tag section: "k:v,k2:v2,bare". A value may
// itself contain ':' (the key ends at the first one).
func parseDogTags(b []byte, s *Sample) Reason {
	for len(b) > 0 {
		end := bytes.IndexByte(b, ',')
		if end < 0 {
			end = len(b)
		}
		tag := b[:end]
		if len(tag) > 0 {
			key, value := tag, trueValue
			if colon := bytes.IndexByte(tag, ':'); colon >= 0 {
				key, value = tag[:colon], tag[colon+1:]
			}
			if len(key) == 0 {
				return ReasonBadTags
			}
			s.Tags = append(s.Tags, Tag{Key: key, Value: value})
		}
		if end == len(b) {
			break
		}
		b = b[end+1:]
	}
	return ReasonNone
}

// parseNameTags takes tags written into the name: Graphite-style
// "name;k=v;k2=v2" or Influx-style "name,k=v,k2=v2". A line may use one tag
// style only.
func parseNameTags(s *Sample) Reason {
	semi := bytes.IndexByte(s.Name, ';')
	comma := bytes.IndexByte(s.Name, ',')
	switch {
	case semi < 0 && comma < 0:
		return ReasonNone
	case semi >= 0 && comma >= 0, len(s.Tags) > 0:
		return ReasonMixedTags
	case semi >= 0:
		return splitNameTags(s, semi, ';')
	default:
		return splitNameTags(s, comma, ',')
	}
}

func splitNameTags(s *Sample, at int, sep byte) Reason {
	b := s.Name[at+1:]
	s.Name = s.Name[:at]
	for len(b) > 0 {
		end := bytes.IndexByte(b, sep)
		if end < 0 {
			end = len(b)
		}
		tag := b[:end]
		eq := bytes.IndexByte(tag, '=')
		if eq <= 0 {
			return ReasonBadTags
		}
		s.Tags = append(s.Tags, Tag{Key: tag[:eq], Value: tag[eq+1:]})
		if end == len(b) {
			break
		}
		b = b[end+1:]
	}
	return ReasonNone
}
