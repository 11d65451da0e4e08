// helm-render: `helm template` for the charts of this repository, where no helm binary is
// packaged (Debian has none). Go's text/template with sprig, as Helm itself is built, plus the
// functions and objects Helm adds. It renders what helm/chain-gateway and its examples use, no
// more; a template that needs something else fails to parse or execute here, loudly.
//
//	helm-render [--name RELEASE] [--namespace NS] [-f VALUES.yaml]... [--api-versions GROUP/VERSION[/KIND]]...
//	            [--notes] CHART_DIR
//
// Supported, as Helm 3 does them:
//   - .Values: the chart's values.yaml deep-merged with each -f file in order (maps merge, other
//     values replace, a null removes the key: a subchart's key too, where Helm has had bugs of
//     its own); validated against values.schema.json (draft-07,
//     with gojsonschema, the validator Helm 3 used) before anything is rendered; no --set.
//   - .Release.Name/.Namespace/.Service/.IsInstall/.IsUpgrade/.Revision, .Chart.<Chart.yaml's
//     fields, capitalised: Name, Version, AppVersion, ...>, .Template.Name/.BasePath,
//     .Subcharts.<name> (a subchart's context, Helm 3.7+),
//     .Capabilities.APIVersions.Has (the built-in groups below plus --api-versions),
//     .Capabilities.KubeVersion.Version/.Major/.Minor, .Files.Get/.GetBytes/.Lines.
//   - every sprig function but env and expandenv (Helm removes them), and Helm's include, tpl,
//     required, fail, toYaml, fromYaml, fromYamlArray, toJson, fromJson, fromJsonArray, and lookup,
//     which answers an empty map as `helm template` does (there is no cluster).
//   - subcharts: charts/<name>/ and Chart.yaml dependencies with a file:// repository (as after
//     `helm dependency build`), their values under the parent's .Values.<name> and their named
//     templates shared with the parent, so that a parent can include them; no alias, condition,
//     tags, globals or import-values.
//   - output: each template's document(s) after "---" and "# Source: <chart>/<path>", in path
//     order, empty ones left out; templates whose name starts with "_" are only defined, and
//     NOTES.txt is rendered only with --notes (then it alone is printed). "<no value>" becomes
//     "" as in Helm.
//
// Not supported: --set, .Files.Glob/AsConfig/AsSecrets, toToml, .helmignore, library charts,
// hooks (rendered like any template), CRDs in crds/.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"
)

type values = map[string]interface{}

// A chart as loaded: its metadata, values, files and templates, and its subcharts.
type chart struct {
	dir       string
	meta      values // Chart.yaml, keys capitalised as .Chart shows them
	values    values // values.yaml
	schema    []byte // values.schema.json, if any
	templates map[string]string
	subcharts []*chart
}

func (c *chart) name() string { return fmt.Sprint(c.meta["Name"]) }

func readYAML(file string) (values, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	out := values{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

func loadChart(dir string) (*chart, error) {
	raw, err := readYAML(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	c := &chart{dir: dir, meta: values{}, templates: map[string]string{}}
	for k, v := range raw {
		c.meta[strings.ToUpper(k[:1])+k[1:]] = v
	}
	if c.values, err = readYAML(filepath.Join(dir, "values.yaml")); errors.Is(err, os.ErrNotExist) {
		c.values = values{}
	} else if err != nil {
		return nil, err
	}
	if c.schema, err = os.ReadFile(filepath.Join(dir, "values.schema.json")); errors.Is(err, os.ErrNotExist) {
		c.schema = nil
	} else if err != nil {
		return nil, err
	}
	err = filepath.Walk(filepath.Join(dir, "templates"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		text, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		c.templates[filepath.ToSlash(rel)] = string(text)
		return err
	})
	if err != nil {
		return nil, err
	}
	// charts/<name>/ as unpacked by hand, and file:// dependencies as `helm dependency build`
	// would have put them there.
	seen := map[string]bool{}
	if entries, err := os.ReadDir(filepath.Join(dir, "charts")); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				sub, err := loadChart(filepath.Join(dir, "charts", e.Name()))
				if err != nil {
					return nil, err
				}
				seen[sub.name()] = true
				c.subcharts = append(c.subcharts, sub)
			}
		}
	}
	deps, _ := c.meta["Dependencies"].([]interface{})
	for _, d := range deps {
		dep, _ := d.(map[string]interface{})
		repo := fmt.Sprint(dep["repository"])
		if seen[fmt.Sprint(dep["name"])] {
			continue
		}
		if !strings.HasPrefix(repo, "file://") {
			return nil, fmt.Errorf("%s: dependency %v: only file:// repositories are supported", dir, dep["name"])
		}
		sub, err := loadChart(filepath.Join(dir, strings.TrimPrefix(repo, "file://")))
		if err != nil {
			return nil, err
		}
		c.subcharts = append(c.subcharts, sub)
	}
	return c, nil
}

// Helm's coalesce: maps merge key by key, anything else from the override replaces, and a null
// in the override removes the key. Between -f files (keepNull) a null is kept, so that it still
// removes the chart's default, as with helm.
func merge(base, override values, keepNull bool) values {
	out := values{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range override {
		if v == nil && !keepNull {
			delete(out, k)
			continue
		}
		if o, ok := v.(map[string]interface{}); ok {
			if b, ok := out[k].(map[string]interface{}); ok {
				out[k] = merge(b, o, keepNull)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// Each chart's effective values: its own values.yaml under what the parent gives it, validated
// against its schema as Helm does.
func scopedValues(c *chart, given values) (values, error) {
	v := merge(c.values, given, false)
	if c.schema != nil {
		doc, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		result, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(c.schema), gojsonschema.NewBytesLoader(doc))
		if err != nil {
			return nil, fmt.Errorf("%s/values.schema.json: %w", c.name(), err)
		}
		if !result.Valid() {
			var msgs []string
			for _, e := range result.Errors() {
				msgs = append(msgs, "- "+e.String())
			}
			return nil, fmt.Errorf("values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n%s",
				c.name(), strings.Join(msgs, "\n"))
		}
	}
	return v, nil
}

type files struct{ dir string }

func (f files) GetBytes(name string) []byte {
	// Helm's .Files holds the chart's files outside templates/ and charts/, and nothing outside
	// the chart.
	clean := path.Clean("/" + name)[1:]
	if strings.HasPrefix(clean, "templates/") || strings.HasPrefix(clean, "charts/") {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(f.dir, filepath.FromSlash(clean)))
	if err != nil {
		return nil
	}
	return data
}
func (f files) Get(name string) string { return string(f.GetBytes(name)) }
func (f files) Lines(name string) []string {
	s := f.Get(name)
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

type apiVersions []string

func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

// The built-in API versions `helm template` assumes without a cluster (the ones this chart can
// ask about); others come from --api-versions, as with helm.
var builtinAPIVersions = apiVersions{"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1", "batch/v1"}

type job struct {
	name string // the template's name: <chart>/templates/<file>, or <parent>/charts/<chart>/...
	data values
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	release := flag.String("name", "release-name", "the release's name")
	namespace := flag.String("namespace", "default", "the release's namespace")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	var valueFiles, extraAPIs listFlag
	flag.Var(&valueFiles, "f", "a values file (repeatable; later ones win)")
	flag.Var(&extraAPIs, "api-versions", "an API version the cluster has, e.g. monitoring.coreos.com/v1 (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [--name R] [--namespace NS] [-f values.yaml]... [--api-versions V]... [--notes] CHART_DIR")
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), *release, *namespace, valueFiles, append(builtinAPIVersions, extraAPIs...), *notes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

func render(dir, release, namespace string, valueFiles []string, apis apiVersions, notes bool) (string, error) {
	top, err := loadChart(dir)
	if err != nil {
		return "", err
	}
	given := values{}
	for _, f := range valueFiles {
		v, err := readYAML(f)
		if err != nil {
			return "", err
		}
		given = merge(given, v, true)
	}
	releaseObj := values{"Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": true,
		"IsUpgrade": false, "Revision": 1}
	capabilities := values{"APIVersions": apis,
		"KubeVersion": values{"Version": "v1.29.0", "Major": "1", "Minor": "29", "GitVersion": "v1.29.0"}}

	root := template.New("gotpl")
	root.Option("missingkey=zero")
	root.Funcs(funcMap(root))
	var jobs []job
	// Helm parses every chart's templates into one set (named templates are global) and renders
	// each file with its own chart's values.
	// Each chart's context (the object its templates see), returned so that the parent's holds
	// it in .Subcharts.
	var walk func(c *chart, prefix string, given values) (values, error)
	walk = func(c *chart, prefix string, given values) (values, error) {
		v, err := scopedValues(c, given)
		if err != nil {
			return nil, err
		}
		subcharts := values{}
		for _, sub := range c.subcharts {
			subGiven, _ := v[sub.name()].(map[string]interface{})
			ctx, err := walk(sub, prefix+c.name()+"/charts/", subGiven)
			if err != nil {
				return nil, err
			}
			subcharts[sub.name()] = ctx
			// The parent sees the subchart's effective values, as in Helm.
			v[sub.name()] = ctx["Values"]
		}
		base := prefix + c.name() + "/templates"
		ctx := func(template string) values {
			return values{"Values": v, "Release": releaseObj, "Chart": c.meta, "Capabilities": capabilities,
				"Files": files{c.dir}, "Subcharts": subcharts,
				"Template": values{"Name": template, "BasePath": base}}
		}
		names := make([]string, 0, len(c.templates))
		for n := range c.templates {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			full := prefix + c.name() + "/" + n
			if _, err := root.New(full).Parse(c.templates[n]); err != nil {
				return nil, err
			}
			file := path.Base(n)
			if strings.HasPrefix(file, "_") || (file == "NOTES.txt") != notes || (notes && prefix != "") {
				continue
			}
			jobs = append(jobs, job{full, ctx(full)})
		}
		return ctx(""), nil
	}
	if _, err := walk(top, "", given); err != nil {
		return "", err
	}
	var out strings.Builder
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].name < jobs[j].name })
	for _, j := range jobs {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, j.name, j.data); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if notes {
			out.WriteString(text)
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", j.name, strings.TrimRight(text, "\n"))
	}
	return out.String(), nil
}

func funcMap(root *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		a := []interface{}{}
		if err := yaml.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromJsonArray"] = func(s string) []interface{} {
		a := []interface{}{}
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf strings.Builder
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf strings.Builder
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	return f
}
