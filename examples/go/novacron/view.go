package novacron

import (
	"errors"
	"strconv"
	"strings"
	"sync"
)

// Counts are what a topic's records came to. Received is Valid + Invalid +
// Duplicates: a duplicate passed the schema but repeated an id already
// applied, so it is counted once, as a duplicate, and not applied again.
type Counts struct {
	Role       Role `json:"role"`
	Received   int  `json:"received"`
	Valid      int  `json:"valid"`
	Invalid    int  `json:"invalid"`
	Duplicates int  `json:"duplicates"`
}

// LatestPrediction is the newest prediction of a link, by event time.
type LatestPrediction struct {
	PredictionID           string  `json:"prediction_id"`
	TS                     float64 `json:"ts"`
	TargetTS               float64 `json:"target_ts"`
	PredictedBandwidthMbps float64 `json:"predicted_bandwidth_mbps"`
	LowerMbps              float64 `json:"lower_mbps"`
	UpperMbps              float64 `json:"upper_mbps"`
	Confidence             float64 `json:"confidence"`
	ProducedAt             float64 `json:"produced_at"`
}

// Summary is the consumer's state: counts per topic and the newest
// prediction per link.
type Summary struct {
	Topics            map[string]Counts           `json:"topics"`
	LatestPredictions map[string]LatestPrediction `json:"latest_predictions"`
}

// Outcome of handling one record.
type Outcome struct {
	// Status is "valid" (applied), "invalid" or "duplicate".
	Status string
	// Record is the decoded record (nil when invalid).
	Record Record
	// Refused says why an invalid record was refused.
	Refused *RefusedError
	// Stale marks a valid prediction older than its link's newest, kept
	// out of the latest view.
	Stale bool
}

// View applies records: it counts them, drops repeated ids and keeps the
// newest prediction per link. It is safe for concurrent use.
type View struct {
	contract     *Contract
	seenCapacity int

	mu     sync.Mutex
	counts map[string]*Counts
	seen   map[string]*SeenIDs
	latest map[string]LatestPrediction
}

// NewView returns an empty view remembering up to seenCapacity ids per topic.
func NewView(contract *Contract, seenCapacity int) *View {
	return &View{
		contract:     contract,
		seenCapacity: seenCapacity,
		counts:       map[string]*Counts{},
		seen:         map[string]*SeenIDs{},
		latest:       map[string]LatestPrediction{},
	}
}

// Track makes a topic appear in the summary before its first record.
func (v *View) Track(topic string, role Role) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.countsOf(topic, role)
}

func (v *View) countsOf(topic string, role Role) *Counts {
	c, ok := v.counts[topic]
	if !ok {
		c = &Counts{Role: role}
		v.counts[topic] = c
		v.seen[topic] = NewSeenIDs(v.seenCapacity)
	}
	return c
}

// Handle checks, decodes and applies one record of a topic. A bad record is
// an outcome, not an error: the caller logs it and goes on.
func (v *View) Handle(topic string, role Role, value []byte) Outcome {
	rec, err := v.contract.Decode(role, value)

	v.mu.Lock()
	defer v.mu.Unlock()
	counts := v.countsOf(topic, role)
	counts.Received++
	if err != nil {
		counts.Invalid++
		var refused *RefusedError
		if !errors.As(err, &refused) {
			refused = &RefusedError{ErrDecode, err.Error()}
		}
		return Outcome{Status: "invalid", Refused: refused}
	}
	if v.seen[topic].Add(rec.DedupeID()) {
		counts.Duplicates++
		return Outcome{Status: "duplicate", Record: rec}
	}
	counts.Valid++
	out := Outcome{Status: "valid", Record: rec}
	if p, ok := rec.(*Prediction); ok {
		out.Stale = !v.applyPrediction(p)
	}
	return out
}

// applyPrediction keeps p if it is its link's newest by ts (on equal ts, the
// one produced last) and tells whether it did. Order holds only within a
// partition, and a redelivered record may be older than what was applied
// since, so arrival order alone would let an old prediction win.
func (v *View) applyPrediction(p *Prediction) bool {
	cur, ok := v.latest[p.LinkID]
	if ok && (p.TS < cur.TS || p.TS == cur.TS && p.ProducedAt <= cur.ProducedAt) {
		return false
	}
	v.latest[p.LinkID] = LatestPrediction{
		PredictionID:           p.PredictionID,
		TS:                     p.TS,
		TargetTS:               p.TargetTS,
		PredictedBandwidthMbps: p.PredictedBandwidthMbps,
		LowerMbps:              p.LowerMbps,
		UpperMbps:              p.UpperMbps,
		Confidence:             p.Confidence,
		ProducedAt:             p.ProducedAt,
	}
	return true
}

// Latest returns a copy of the newest prediction per link.
func (v *View) Latest() map[string]LatestPrediction {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]LatestPrediction, len(v.latest))
	for k, p := range v.latest {
		out[k] = p
	}
	return out
}

// Summary returns a copy of the counts and the latest predictions.
func (v *View) Summary() Summary {
	latest := v.Latest()
	v.mu.Lock()
	defer v.mu.Unlock()
	topics := make(map[string]Counts, len(v.counts))
	for t, c := range v.counts {
		topics[t] = *c
	}
	return Summary{Topics: topics, LatestPredictions: latest}
}

// Field is one key=value of a printed line.
type Field struct {
	Key   string
	Value string
}

// FormatLine writes fields as logfmt: key=value, quoted where a value holds
// a space, a quote or an equals sign.
func FormatLine(fields []Field) string {
	var sb strings.Builder
	for i, f := range fields {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(f.Key)
		sb.WriteByte('=')
		if f.Value == "" || strings.ContainsAny(f.Value, " \"=\t\n\\") {
			sb.WriteString(strconv.Quote(f.Value))
		} else {
			sb.WriteString(f.Value)
		}
	}
	return sb.String()
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
