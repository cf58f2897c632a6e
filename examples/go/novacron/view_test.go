package novacron

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func loadContract(t *testing.T) *Contract {
	t.Helper()
	c, err := LoadContract(schemaDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// prediction is a valid predictions.bandwidth.v1 record of link at event i.
func prediction(link string, i int, mbps float64) Prediction {
	ts := 1.75e9 + float64(i)
	return Prediction{
		SchemaVersion:          1,
		PredictionID:           fmt.Sprintf("bandwidth-lstm-internet:1:%s-%d", link, i),
		LinkID:                 link,
		Mode:                   "internet",
		TS:                     ts,
		TargetTS:               ts + 1,
		HorizonSteps:           1,
		PredictedBandwidthMbps: mbps,
		LowerMbps:              mbps * 0.9,
		UpperMbps:              mbps * 1.1,
		IntervalLevel:          0.8,
		Confidence:             0.9,
		Model:                  ModelRef{"bandwidth-lstm-internet", "1"},
		SourceEventIDs:         []string{fmt.Sprintf("%s-%d", link, i)},
		InputWindow:            InputWindow{ts - 9, ts, 10},
		ProducedAt:             1.76e9,
	}
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLatestPredictionIsTheNewestByTS(t *testing.T) {
	v := NewView(loadContract(t), 100)
	const topic = "predictions.bandwidth.v1"
	handle := func(p Prediction) Outcome { return v.Handle(topic, RolePredictions, encode(t, p)) }

	if o := handle(prediction("a", 10, 400)); o.Status != "valid" || o.Stale {
		t.Fatalf("first prediction: %+v", o)
	}
	if o := handle(prediction("a", 12, 420)); o.Status != "valid" || o.Stale {
		t.Fatalf("newer prediction: %+v", o)
	}
	// From another partition's redelivery, say: new to this view, but older.
	if o := handle(prediction("a", 11, 999)); o.Status != "valid" || !o.Stale {
		t.Fatalf("older prediction: want valid and stale, got %+v", o)
	}
	// The same record again.
	if o := handle(prediction("a", 12, 420)); o.Status != "duplicate" {
		t.Fatalf("redelivered prediction: want duplicate, got %+v", o)
	}
	handle(prediction("b", 3, 50))

	s := v.Summary()
	if got := s.LatestPredictions["a"]; got.PredictionID != "bandwidth-lstm-internet:1:a-12" || got.PredictedBandwidthMbps != 420 {
		t.Errorf("latest of a: got %+v", got)
	}
	if got := s.LatestPredictions["b"].PredictionID; got != "bandwidth-lstm-internet:1:b-3" {
		t.Errorf("latest of b: got %q", got)
	}
	want := Counts{Role: RolePredictions, Received: 5, Valid: 4, Invalid: 0, Duplicates: 1}
	if got := s.Topics[topic]; got != want {
		t.Errorf("counts: want %+v, got %+v", want, got)
	}
}

func TestRefusedRecordsAreCountedWithTheReason(t *testing.T) {
	v := NewView(loadContract(t), 100)
	const topic = "predictions.bandwidth.v1"
	good := encode(t, prediction("a", 10, 400))
	withField := func(key string, value any) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		if value == nil {
			delete(m, key)
		} else {
			m[key] = value
		}
		return encode(t, m)
	}
	cases := []struct {
		name   string
		value  []byte
		kind   string
		reason string
	}{
		{"not json", []byte(`{"prediction_id": `), ErrMalformedJSON, ""},
		{"newer schema", withField("schema_version", 2), ErrUnknownSchemaVersion, "schema_version must be 1, got 2"},
		{"missing field", withField("link_id", nil), ErrSchemaViolation, "missing property 'link_id'"},
		{"out of range", withField("confidence", 1.5), ErrSchemaViolation, "at '/confidence'"},
		{"unknown field", withField("bandwidth", 1), ErrSchemaViolation, "'bandwidth'"},
	}
	for _, c := range cases {
		o := v.Handle(topic, RolePredictions, c.value)
		if o.Status != "invalid" || o.Refused == nil || o.Refused.Kind != c.kind {
			t.Errorf("%s: want invalid %s, got %+v", c.name, c.kind, o)
			continue
		}
		if !strings.Contains(o.Refused.Reason, c.reason) {
			t.Errorf("%s: reason %q does not mention %q", c.name, o.Refused.Reason, c.reason)
		}
	}
	if o := v.Handle(topic, RolePredictions, good); o.Status != "valid" {
		t.Errorf("a good record after bad ones: got %+v", o)
	}
	want := Counts{Role: RolePredictions, Received: len(cases) + 1, Valid: 1, Invalid: len(cases)}
	if got := v.Summary().Topics[topic]; got != want {
		t.Errorf("counts: want %+v, got %+v", want, got)
	}
	if len(v.Latest()) != 1 {
		t.Errorf("refused records reached the latest view: %+v", v.Latest())
	}
}

func TestAlertsAreDedupedByIDAndSeq(t *testing.T) {
	v := NewView(loadContract(t), 100)
	alert := func(seq int, status string) []byte {
		return encode(t, Alert{
			SchemaVersion: 1, AlertID: "h1:cpu:h1-40", Status: status, Seq: seq,
			EntityKind: "host", EntityID: "h1", TS: 1.75e9 + float64(seq), OpenedTS: 1.75e9,
			AnomalyScore: 0.7, Confidence: 0.6, Severity: "high", AnomalyType: "cpu",
			Model: ModelRef{"anomaly-ensemble", "1"}, SourceEventIDs: []string{"h1-40"},
			TimeRange: TimeRange{1.75e9, 1.75e9 + float64(seq)},
			Reason: AlertReason{Summary: "cpu high", Threshold: 0.5, HistorySamples: 40, PeakScore: 0.7,
				TopFeatures: []AlertFeature{}, Detectors: map[string]float64{"robust_z": 0.8}},
			Metrics:    []AlertMetric{{"cpu_pct", 97, 40, 30, 50, 1}},
			ProducedAt: 1.76e9,
		})
	}
	var got []string
	for _, rec := range [][]byte{alert(0, "open"), alert(1, "update"), alert(1, "update"), alert(2, "resolve")} {
		o := v.Handle("alerts.anomaly.v1", RoleAlerts, rec)
		if o.Refused != nil {
			t.Fatalf("alert refused: %v", o.Refused)
		}
		got = append(got, o.Status)
	}
	if want := "valid valid duplicate valid"; strings.Join(got, " ") != want {
		t.Errorf("want %s, got %s", want, strings.Join(got, " "))
	}
}

func TestSeenIDsForgetsTheLeastRecentlySeen(t *testing.T) {
	s := NewSeenIDs(3)
	for _, id := range []string{"a", "b", "c"} {
		if s.Add(id) {
			t.Fatalf("%s: new id reported as seen", id)
		}
	}
	if !s.Add("a") { // a is now the most recently seen
		t.Fatal("a: seen id reported as new")
	}
	s.Add("d") // evicts b, the least recently seen
	if s.Len() != 3 {
		t.Fatalf("len: want 3, got %d", s.Len())
	}
	if s.Add("b") {
		t.Error("b: should have been forgotten")
	}
	if !s.Add("a") || !s.Add("d") {
		t.Error("a and d: should still be remembered")
	}
}

func TestFormatLineQuotesWhereNeeded(t *testing.T) {
	got := FormatLine([]Field{{"id", "m:1:l-2"}, {"reason", `at '/ts': got "x"`}, {"empty", ""}})
	want := `id=m:1:l-2 reason="at '/ts': got \"x\"" empty=""`
	if got != want {
		t.Errorf("want %s, got %s", want, got)
	}
}
