package novacron

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const schemaDir = "../../../schemas"

// reporter is the part of *testing.T the check uses, so that a test can
// record what the check reports on a struct made to drift.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

type recorder struct{ errors []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func loadSchema(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(schemaDir, name+".json"))
	if err != nil {
		t.Fatalf("read schema %s: %v", name, err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("parse schema %s: %v", name, err)
	}
	return schema
}

// TestStructsMatchSchemas: every required property of a schema (at every
// level the structs spell out) is a struct field with the same json tag,
// every json tag is a property of the schema, Go types fit the schema's
// types, and a property that may be null is a pointer, slice or map.
func TestStructsMatchSchemas(t *testing.T) {
	cases := []struct {
		role Role
		typ  reflect.Type
	}{
		{RolePredictions, reflect.TypeFor[Prediction]()},
		{RoleAlerts, reflect.TypeFor[Alert]()},
		{RoleScaling, reflect.TypeFor[ScalingAction]()},
	}
	for _, c := range cases {
		t.Run(SchemaName(c.role), func(t *testing.T) {
			checkStruct(t, SchemaName(c.role), c.typ, loadSchema(t, SchemaName(c.role)))
		})
	}
}

func checkStruct(t reporter, path string, typ reflect.Type, schema map[string]any) {
	t.Helper()
	props, _ := schema["properties"].(map[string]any)
	if props == nil {
		t.Errorf("%s: Go has struct %s, the schema has no properties here", path, typ)
		return
	}
	tags := map[string]bool{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "" || tag == "-" {
			t.Errorf("%s: field %s has no json tag", path, f.Name)
			continue
		}
		tags[tag] = true
		sub, ok := props[tag].(map[string]any)
		if !ok {
			t.Errorf("%s: field %s has json tag %q, which is not a property of the schema (properties: %v)",
				path, f.Name, tag, sortedKeys(props))
			continue
		}
		checkField(t, path+"."+tag, f.Type, sub)
	}
	required, _ := schema["required"].([]any)
	for _, r := range required {
		if !tags[r.(string)] {
			t.Errorf("%s: required property %q has no struct field", path, r)
		}
	}
}

func checkField(t reporter, path string, typ reflect.Type, schema map[string]any) {
	t.Helper()
	if nullable(schema) && !slices.Contains([]reflect.Kind{reflect.Pointer, reflect.Slice, reflect.Map}, typ.Kind()) {
		t.Errorf("%s: the schema allows null, the Go type %s cannot hold it", path, typ)
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	kinds := schemaTypes(schema)
	if len(kinds) > 0 && !slices.ContainsFunc(kinds, func(k string) bool { return fits(typ, k) }) {
		t.Errorf("%s: the schema's type is %v, the Go type is %s", path, kinds, typ)
	}
	switch typ.Kind() {
	case reflect.Struct:
		checkStruct(t, path, typ, schema)
	case reflect.Slice:
		items, _ := schema["items"].(map[string]any)
		if items == nil {
			t.Errorf("%s: Go has a slice, the schema has no items", path)
			return
		}
		checkField(t, path+"[]", typ.Elem(), items)
	}
}

// schemaTypes is the JSON types a schema allows besides null, from "type",
// or else from the values of "const", "enum" or the branches of "anyOf".
func schemaTypes(schema map[string]any) []string {
	var types []string
	add := func(k string) {
		if k != "null" && !slices.Contains(types, k) {
			types = append(types, k)
		}
	}
	switch v := schema["type"].(type) {
	case string:
		add(v)
	case []any:
		for _, k := range v {
			add(k.(string))
		}
	}
	if len(types) > 0 {
		return types
	}
	values, _ := schema["enum"].([]any)
	if c, ok := schema["const"]; ok {
		values = append(values, c)
	}
	for _, v := range values {
		switch v := v.(type) {
		case string:
			add("string")
		case float64:
			if v == float64(int64(v)) {
				add("integer")
			} else {
				add("number")
			}
		}
	}
	branches, _ := schema["anyOf"].([]any)
	for _, b := range branches {
		for _, k := range schemaTypes(b.(map[string]any)) {
			add(k)
		}
	}
	return types
}

func nullable(schema map[string]any) bool {
	if schema["type"] == "null" {
		return true
	}
	if types, ok := schema["type"].([]any); ok && slices.Contains(types, any("null")) {
		return true
	}
	if values, ok := schema["enum"].([]any); ok && slices.Contains(values, nil) {
		return true
	}
	branches, _ := schema["anyOf"].([]any)
	return slices.ContainsFunc(branches, func(b any) bool { return nullable(b.(map[string]any)) })
}

func fits(typ reflect.Type, jsonType string) bool {
	switch jsonType {
	case "string":
		return typ.Kind() == reflect.String
	case "integer":
		return typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Int64
	case "number":
		return typ.Kind() == reflect.Float64
	case "boolean":
		return typ.Kind() == reflect.Bool
	case "array":
		return typ.Kind() == reflect.Slice
	case "object":
		return typ.Kind() == reflect.Struct || typ.Kind() == reflect.Map
	}
	return false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestTheCheckCatchesDrift makes sure the check above fails where it must:
// a struct missing a required property, and a tag the schema lacks.
func TestTheCheckCatchesDrift(t *testing.T) {
	type missingRequired struct {
		Name string `json:"name"`
	}
	type unknownTag struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Build   string `json:"build"`
	}
	model := map[string]any{
		"required":   []any{"name", "version"},
		"properties": map[string]any{"name": map[string]any{"type": "string"}, "version": map[string]any{"type": "string"}},
	}
	for name, typ := range map[string]reflect.Type{
		"missing required": reflect.TypeFor[missingRequired](),
		"unknown tag":      reflect.TypeFor[unknownTag](),
	} {
		rec := &recorder{}
		checkStruct(rec, "model", typ, model)
		if len(rec.errors) != 1 {
			t.Errorf("%s: want one finding, got %q", name, rec.errors)
		}
	}
}
