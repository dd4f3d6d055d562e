package schemas

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pinkiefleet/pinkie/events"
)

func loadSet(t *testing.T) *Set {
	t.Helper()
	s, err := Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

// TestCatalogSchemasExamplesAgree keeps the three descriptions of every
// event type in step: the Go type, the JSON Schema and the golden example.
func TestCatalogSchemasExamplesAgree(t *testing.T) {
	s := loadSet(t)
	for _, k := range events.Catalog() {
		t.Run(k.Name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("examples", k.SchemaFile()))
			if err != nil {
				t.Fatalf("golden example: %v", err)
			}
			e, gotKind, err := s.Validate(b)
			if err != nil {
				t.Fatalf("example does not validate: %v", err)
			}
			if gotKind.Name != k.Name {
				t.Fatalf("example decodes as kind %q, want %q", gotKind.Name, k.Name)
			}
			v, err := events.DecodeData(e, k)
			if err != nil {
				t.Fatalf("example data does not fit the Go type: %v", err)
			}
			// Re-encoding the Go value must give back the example's data:
			// the Go type carries every field the example has.
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			var want, got any
			if err := json.Unmarshal(e.Data(), &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(again, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Go type round trip differs from the example (-example +go):\n%s", diff)
			}
			// The schema's properties and the Go type's JSON fields agree,
			// at every nesting level.
			compareShape(t, k.Name, s.Raw(k.Type()), reflect.TypeOf(k.New()).Elem())
		})
	}
}

func compareShape(t *testing.T, path string, schema map[string]any, typ reflect.Type) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case typ == reflect.TypeOf(time.Time{}):
		if schema["type"] != "string" || schema["format"] != "date-time" {
			t.Errorf("%s: Go time.Time but schema is %v/%v, want string/date-time", path, schema["type"], schema["format"])
		}
		return
	case typ.Kind() == reflect.Slice:
		if schema["type"] != "array" {
			t.Errorf("%s: Go slice but schema type %v", path, schema["type"])
			return
		}
		items, _ := schema["items"].(map[string]any)
		compareShape(t, path+"[]", items, typ.Elem())
		return
	case typ.Kind() == reflect.Map:
		if schema["type"] != "object" {
			t.Errorf("%s: Go map but schema type %v", path, schema["type"])
		}
		if add, ok := schema["additionalProperties"].(map[string]any); ok {
			compareShape(t, path+"{}", add, typ.Elem())
		}
		return
	case typ.Kind() != reflect.Struct:
		return
	}
	if schema["type"] != "object" {
		t.Errorf("%s: Go struct but schema type %v", path, schema["type"])
		return
	}
	if schema["additionalProperties"] != false {
		t.Errorf("%s: schema must set additionalProperties: false", path)
	}
	props, _ := schema["properties"].(map[string]any)
	goFields := jsonFields(typ)
	var onlyGo, onlySchema []string
	for n := range goFields {
		if _, ok := props[n]; !ok {
			onlyGo = append(onlyGo, n)
		}
	}
	for n := range props {
		if _, ok := goFields[n]; !ok {
			onlySchema = append(onlySchema, n)
		}
	}
	sort.Strings(onlyGo)
	sort.Strings(onlySchema)
	if len(onlyGo) > 0 || len(onlySchema) > 0 {
		t.Errorf("%s: fields only in Go %v, only in schema %v", path, onlyGo, onlySchema)
	}
	for n, ft := range goFields {
		if p, ok := props[n].(map[string]any); ok {
			compareShape(t, path+"."+n, p, ft)
		}
	}
}

func TestEveryKindHasASchemaAndNoSchemaIsOrphaned(t *testing.T) {
	want := map[string]bool{}
	for _, k := range events.Catalog() {
		want[k.SchemaFile()] = true
	}
	entries, err := files.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !want[e.Name()] {
			t.Errorf("schema file %s belongs to no kind in events.Catalog", e.Name())
		}
		delete(want, e.Name())
	}
	for f := range want {
		t.Errorf("kind schema %s missing", f)
	}
}

func TestValidateRejects(t *testing.T) {
	s := loadSet(t)
	golden, err := os.ReadFile(filepath.Join("examples", "heartbeat.v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(golden, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	data := func(m map[string]any) map[string]any { return m["data"].(map[string]any) }
	tests := []struct {
		name    string
		payload []byte
		wantErr string
	}{
		{"not JSON", []byte("{nope"), "not a valid pinkie event"},
		{"empty", nil, "empty payload"},
		{"unknown type", mutate(func(m map[string]any) { m["type"] = "pinkie.nope.v1" }), `unknown type "pinkie.nope.v1"`},
		{"bad source", mutate(func(m map[string]any) { m["source"] = "http://goliath/x" }), "does not start with pinkie://"},
		{"bad host in source", mutate(func(m map[string]any) { m["source"] = "pinkie://go.liath/x" }), "invalid host name"},
		{"wrong dataschema", mutate(func(m map[string]any) { m["dataschema"] = "https://pinkie.dev/schemas/profile.v1.json" }), "dataschema"},
		{"no id", mutate(func(m map[string]any) { delete(m, "id") }), "id"},
		{"unknown field", mutate(func(m map[string]any) { data(m)["extra"] = 1 }), "extra"},
		{"ill-typed field", mutate(func(m map[string]any) { data(m)["counter"] = "many" }), "/counter"},
		{"counter zero", mutate(func(m map[string]any) { data(m)["counter"] = 0 }), "/counter"},
		{"missing field", mutate(func(m map[string]any) { delete(data(m), "instance") }), "instance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.Validate(tt.payload)
			if err == nil {
				t.Fatalf("Validate accepted %s", tt.payload)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestEveryFullSchemaCompiles(t *testing.T) {
	s := loadSet(t)
	for _, k := range events.Catalog() {
		if _, err := s.full(k.Type()); err != nil {
			t.Errorf("%s: %v", k.Type(), err)
		}
	}
}
