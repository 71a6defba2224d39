package policy
import "testing"
func TestZZSize(t *testing.T){ tb, err := Compile(DefaultPolicy()); if err!=nil {t.Fatal(err)}; t.Logf("nodes %d lex %d eff %d pat %d entries %v rules %v", len(tb.Nodes), len(tb.Lexicon), len(tb.Effects), len(tb.Patterns), tb.Entries, tb.Rules)
 maxn:=0; for k:=range tb.Lexicon { if int(k.Len)>maxn {maxn=int(k.Len)} }; t.Log("maxname", maxn)
 for i,e := range tb.Effects { t.Logf("%d %+v %s", i, e, tb.EffectNames[i]) }
}
