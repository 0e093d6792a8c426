// helmrender renders a Helm chart the way `helm template` does, for tests on machines where
// Helm itself cannot be installed: Go's text/template with the sprig functions plus Helm's own
// include, tpl, toYaml, fromYaml, required, fail and .Files.Get/.Files.Glob. Chart CRDs
// (crds/*.yaml) are emitted first, as `helm install` applies them before the templates.
//
// Usage: helmrender CHART_DIR RELEASE NAMESPACE [VALUES_OVERRIDE.yaml]
// Build offline: GO111MODULE=off GOPATH=/usr/share/gocode go build
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type files map[string][]byte

func (f files) Get(name string) string { return string(f[name]) }

func (f files) Glob(pattern string) files {
	out := files{}
	for name, data := range f {
		if ok, _ := filepath.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

func readYAML(path string) (map[string]interface{}, error) {
	out := map[string]interface{}{}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

// merge overlays b onto a (maps merge recursively, everything else replaces).
func merge(a, b map[string]interface{}) map[string]interface{} {
	for k, v := range b {
		if bm, ok := v.(map[string]interface{}); ok {
			if am, ok := a[k].(map[string]interface{}); ok {
				a[k] = merge(am, bm)
				continue
			}
		}
		a[k] = v
	}
	return a
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func run() error {
	if len(os.Args) < 4 {
		return fmt.Errorf("usage: helmrender CHART_DIR RELEASE NAMESPACE [VALUES.yaml]")
	}
	chartDir, release, namespace := os.Args[1], os.Args[2], os.Args[3]
	chart, err := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	if len(os.Args) > 4 {
		override, err := readYAML(os.Args[4])
		if err != nil {
			return err
		}
		values = merge(values, override)
	}
	all := files{}
	err = filepath.Walk(chartDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, path)
		data, err := os.ReadFile(path)
		all[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		return err
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"],
		},
		"Files":        all,
		"Capabilities": map[string]interface{}{"KubeVersion": map[string]interface{}{"Version": "v1.20.2"}},
	}

	root := template.New("chart").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		out := map[string]interface{}{}
		_ = yaml.Unmarshal([]byte(s), &out)
		return out
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["fail"] = func(msg string) (string, error) { return "", fmt.Errorf("%s", msg) }
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	root.Funcs(funcs)

	var names []string
	for name := range all {
		if strings.HasPrefix(name, "templates/") &&
			(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".tpl")) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := root.New(name).Parse(string(all[name])); err != nil {
			return err
		}
	}

	var out strings.Builder
	var crds []string
	for name := range all {
		if strings.HasPrefix(name, "crds/") && strings.HasSuffix(name, ".yaml") {
			crds = append(crds, name)
		}
	}
	sort.Strings(crds)
	for _, name := range crds {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimSpace(string(all[name])))
	}
	for _, name := range names {
		if strings.HasPrefix(filepath.Base(name), "_") || strings.HasSuffix(name, ".tpl") {
			continue
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, top); err != nil {
			return err
		}
		body := strings.TrimSpace(buf.String())
		if body == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, body)
	}
	_, err = os.Stdout.WriteString(out.String())
	return err
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "helmrender:", err)
		os.Exit(1)
	}
}
