package novacron

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Role is what a topic carries, whatever the topic is called on a cluster.
type Role string

// The output roles this package reads.
const (
	RolePredictions Role = "predictions"
	RoleAlerts      Role = "alerts"
	RoleScaling     Role = "scaling"
)

// Roles lists the roles in a fixed order.
var Roles = []Role{RolePredictions, RoleAlerts, RoleScaling}

// SchemaName is the schema of a role's records, which is also the role's
// default topic name: topics are versioned in their names, and so are the
// files in schemas/.
func SchemaName(role Role) string {
	switch role {
	case RolePredictions:
		return "predictions.bandwidth.v1"
	case RoleAlerts:
		return "alerts.anomaly.v1"
	case RoleScaling:
		return "actions.scaling.v1"
	}
	return ""
}

// Record is a decoded output record.
type Record interface {
	// DedupeID is the same for a record and its redeliveries, and differs
	// between records that must both be applied.
	DedupeID() string
	// Line is the record's fields for one printed line.
	Line() []Field
}

// Why a record was refused, in the words of NovaCron's dead-letter kinds.
const (
	ErrMalformedJSON        = "malformed_json"
	ErrUnknownSchemaVersion = "unknown_schema_version"
	ErrSchemaViolation      = "schema_violation"
	ErrDecode               = "decode_error"
)

// RefusedError says why a record was not decoded.
type RefusedError struct {
	Kind   string
	Reason string
}

func (e *RefusedError) Error() string { return e.Kind + ": " + e.Reason }

// Contract holds the compiled schema of each role.
type Contract struct {
	schemas map[Role]*jsonschema.Schema
}

// LoadContract compiles <dir>/<schema name>.json for every role.
func LoadContract(dir string) (*Contract, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	contract := &Contract{schemas: map[Role]*jsonschema.Schema{}}
	for _, role := range Roles {
		path, err := filepath.Abs(filepath.Join(dir, SchemaName(role)+".json"))
		if err != nil {
			return nil, err
		}
		sch, err := c.Compile(path)
		if err != nil {
			return nil, fmt.Errorf("schema of %s records: %w", role, err)
		}
		contract.schemas[role] = sch
	}
	return contract, nil
}

// Decode checks a record against its role's schema and decodes it. A refused
// record gives a *RefusedError naming what was expected and what was got.
func (c *Contract) Decode(role Role, value []byte) (Record, error) {
	sch, ok := c.schemas[role]
	if !ok {
		return nil, fmt.Errorf("no schema for role %q", role)
	}
	instance, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return nil, &RefusedError{ErrMalformedJSON, err.Error()}
	}
	// A newer schema_version may mean fields changed meaning: refuse it
	// before the schema does, so the reason says so plainly.
	if obj, ok := instance.(map[string]any); ok {
		if v, present := obj["schema_version"]; present && otherVersion(v) {
			return nil, &RefusedError{ErrUnknownSchemaVersion,
				fmt.Sprintf("schema_version must be %d, got %v", SchemaVersion, v)}
		}
	}
	if err := sch.Validate(instance); err != nil {
		return nil, &RefusedError{ErrSchemaViolation, violations(err)}
	}
	var rec Record
	switch role {
	case RolePredictions:
		rec = &Prediction{}
	case RoleAlerts:
		rec = &Alert{}
	case RoleScaling:
		rec = &ScalingAction{}
	}
	if err := json.Unmarshal(value, rec); err != nil {
		return nil, &RefusedError{ErrDecode, err.Error()}
	}
	return rec, nil
}

// otherVersion tells a numeric schema_version other than SchemaVersion; a
// value of another type is left to the schema.
func otherVersion(v any) bool {
	n, ok := v.(json.Number)
	if !ok {
		return false
	}
	f, err := n.Float64()
	return err != nil || f != SchemaVersion
}

// violations flattens a validation error to its leaves, one "at '/path':
// what was wrong" per leaf.
func violations(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	var leaves []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			leaves = append(leaves, strings.TrimPrefix(e.Error(), "at '': "))
			return
		}
		for _, cause := range e.Causes {
			walk(cause)
		}
	}
	walk(ve)
	return strings.Join(leaves, "; ")
}
