// Package novacron reads NovaCron's output records: it checks each against the
// topic's JSON Schema, decodes it into the structs below, drops redelivered
// records by id and keeps the newest bandwidth prediction per link.
//
// The structs are written by hand from schemas/*.json; records_test.go fails
// when a schema gains a required property or a struct names one the schema
// lacks.
package novacron

import "fmt"

// SchemaVersion is the only schema_version this package reads; records with
// another value are refused (the schema says so with "const": 1).
const SchemaVersion = 1

// ModelRef names the model that produced a record.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// InputWindow is the time range and size of the window a model read.
type InputWindow struct {
	FromTS  float64 `json:"from_ts"`
	ToTS    float64 `json:"to_ts"`
	Samples int     `json:"samples"`
}

// Prediction is a predictions.bandwidth.v1 record (key: link_id).
type Prediction struct {
	SchemaVersion          int         `json:"schema_version"`
	PredictionID           string      `json:"prediction_id"`
	LinkID                 string      `json:"link_id"`
	Mode                   string      `json:"mode"`
	TS                     float64     `json:"ts"`
	TargetTS               float64     `json:"target_ts"`
	HorizonSteps           int         `json:"horizon_steps"`
	PredictedBandwidthMbps float64     `json:"predicted_bandwidth_mbps"`
	LowerMbps              float64     `json:"lower_mbps"`
	UpperMbps              float64     `json:"upper_mbps"`
	IntervalLevel          float64     `json:"interval_level"`
	Confidence             float64     `json:"confidence"`
	Model                  ModelRef    `json:"model"`
	SourceEventIDs         []string    `json:"source_event_ids"`
	InputWindow            InputWindow `json:"input_window"`
	FeaturesSeen           []string    `json:"features_seen,omitempty"`
	OnlineGain             *float64    `json:"online_gain,omitempty"`
	Serving                *Serving    `json:"serving,omitempty"`
	ProducedAt             float64     `json:"produced_at"`
}

// Serving is champion/challenger on the link: the published prediction (and Model) is
// the champion's, the batch model's or the link's online learner's.
type Serving struct {
	Champion string       `json:"champion"`
	Degraded *bool        `json:"degraded,omitempty"`
	Batch    ServingModel `json:"batch"`
	Online   ServingModel `json:"online"`
}

// ServingModel is one side of Serving: the model, its point and its recent accuracy.
type ServingModel struct {
	Name              string   `json:"name"`
	Version           string   `json:"version"`
	PredictedMbps     *float64 `json:"predicted_mbps,omitempty"`
	RecentAbsPctError *float64 `json:"recent_abs_pct_error,omitempty"`
	RecentWithin20Pct *float64 `json:"recent_within_20pct,omitempty"`
}

// DedupeID is prediction_id: a redelivered event gives the same id.
func (p *Prediction) DedupeID() string { return p.PredictionID }

// Line is the record's fields for one printed line.
func (p *Prediction) Line() []Field {
	return []Field{
		{"kind", "prediction"}, {"id", p.PredictionID}, {"link_id", p.LinkID},
		{"ts", formatFloat(p.TS)}, {"predicted_mbps", formatFloat(p.PredictedBandwidthMbps)},
		{"lower_mbps", formatFloat(p.LowerMbps)}, {"upper_mbps", formatFloat(p.UpperMbps)},
	}
}

// AlertMetric is one metric of an alerted sample against its normal range.
type AlertMetric struct {
	Name         string  `json:"name"`
	Value        float64 `json:"value"`
	Expected     float64 `json:"expected"`
	Low          float64 `json:"low"`
	High         float64 `json:"high"`
	Contribution float64 `json:"contribution"`
}

// AlertFeature is one of the features that drove an alert's score.
type AlertFeature struct {
	Name         string  `json:"name"`
	Value        float64 `json:"value"`
	Contribution float64 `json:"contribution"`
}

// AlertReason explains an alert for a person.
type AlertReason struct {
	Summary         string             `json:"summary"`
	Threshold       float64            `json:"threshold"`
	FittedDetectors bool               `json:"fitted_detectors"`
	HistorySamples  int                `json:"history_samples"`
	PeakScore       float64            `json:"peak_score"`
	TopFeatures     []AlertFeature     `json:"top_features"`
	Detectors       map[string]float64 `json:"detectors"`
}

// TimeRange is a range of event time, seconds since the Unix epoch.
type TimeRange struct {
	FromTS float64 `json:"from_ts"`
	ToTS   float64 `json:"to_ts"`
}

// Alert is an alerts.anomaly.v1 record (key: host_id or link_id): one change
// of an alert, open (seq 0), update (seq + 1) or resolve.
type Alert struct {
	SchemaVersion    int           `json:"schema_version"`
	AlertID          string        `json:"alert_id"`
	Status           string        `json:"status"`
	Seq              int           `json:"seq"`
	EntityKind       string        `json:"entity_kind"`
	EntityID         string        `json:"entity_id"`
	TS               float64       `json:"ts"`
	OpenedTS         float64       `json:"opened_ts"`
	AnomalyScore     float64       `json:"anomaly_score"`
	Confidence       float64       `json:"confidence"`
	Severity         string        `json:"severity"`
	PreviousSeverity *string       `json:"previous_severity,omitempty"`
	AnomalyType      string        `json:"anomaly_type"`
	Resolution       *string       `json:"resolution,omitempty"`
	Model            ModelRef      `json:"model"`
	SourceEventIDs   []string      `json:"source_event_ids"`
	TimeRange        TimeRange     `json:"time_range"`
	Reason           AlertReason   `json:"reason"`
	Metrics          []AlertMetric `json:"metrics"`
	ProducedAt       float64       `json:"produced_at"`
}

// DedupeID is alert_id and seq: alert_id is stable from open to resolve, so
// one alert's records differ by seq, and a redelivered record repeats both.
func (a *Alert) DedupeID() string { return fmt.Sprintf("%s#%d", a.AlertID, a.Seq) }

// Line is the record's fields for one printed line.
func (a *Alert) Line() []Field {
	return []Field{
		{"kind", "alert"}, {"id", a.DedupeID()}, {"entity_id", a.EntityID},
		{"status", a.Status}, {"severity", a.Severity}, {"type", a.AnomalyType},
		{"ts", formatFloat(a.TS)},
	}
}

// ScalingReason says why a scaling action was decided.
type ScalingReason struct {
	Summary           string    `json:"summary"`
	Rule              string    `json:"rule,omitempty"`
	Metric            string    `json:"metric,omitempty"`
	Demand            *float64  `json:"demand,omitempty"`
	Threshold         *float64  `json:"threshold,omitempty"`
	SecondsToBreach   *float64  `json:"seconds_to_breach,omitempty"`
	LeadTimeS         *float64  `json:"lead_time_s,omitempty"`
	CostImpact        *float64  `json:"cost_impact,omitempty"`
	PerformanceImpact *float64  `json:"performance_impact,omitempty"`
	Urgency           *float64  `json:"urgency,omitempty"`
	Forecast          []float64 `json:"forecast,omitempty"`
	ForecastLower     []float64 `json:"forecast_lower,omitempty"`
	ForecastUpper     []float64 `json:"forecast_upper,omitempty"`
	ForecastHorizonsS []float64 `json:"forecast_horizons_s,omitempty"`
	IntervalLevel     *float64  `json:"interval_level,omitempty"`
	WorkloadType      *string   `json:"workload_type,omitempty"`
}

// ScalingAction is an actions.scaling.v1 record (key: host_id or cluster).
type ScalingAction struct {
	SchemaVersion  int           `json:"schema_version"`
	ActionID       string        `json:"action_id"`
	Target         string        `json:"target"`
	TS             float64       `json:"ts"`
	Action         string        `json:"action"`
	Resource       string        `json:"resource"`
	Policy         string        `json:"policy"`
	CurrentValue   *float64      `json:"current_value,omitempty"`
	TargetValue    *float64      `json:"target_value,omitempty"`
	Score          float64       `json:"score"`
	Confidence     float64       `json:"confidence"`
	Model          ModelRef      `json:"model"`
	Models         []ModelRef    `json:"models,omitempty"`
	SourceEventIDs []string      `json:"source_event_ids,omitempty"`
	InputWindow    *InputWindow  `json:"input_window,omitempty"`
	Reason         ScalingReason `json:"reason"`
	ProducedAt     float64       `json:"produced_at"`
}

// DedupeID is action_id (target, event acted on, action).
func (s *ScalingAction) DedupeID() string { return s.ActionID }

// Line is the record's fields for one printed line.
func (s *ScalingAction) Line() []Field {
	line := []Field{
		{"kind", "action"}, {"id", s.ActionID}, {"target", s.Target},
		{"action", s.Action}, {"resource", s.Resource}, {"ts", formatFloat(s.TS)},
	}
	if s.TargetValue != nil {
		line = append(line, Field{"target_value", formatFloat(*s.TargetValue)})
	}
	return line
}
