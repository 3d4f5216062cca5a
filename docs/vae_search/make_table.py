import json
rows=[json.loads(l) for l in open('results.jsonl')]
D=None
import search
D=search.DEFAULTS
def diff(c):
    d={k:v for k,v in c.items() if D.get(k)!=v and k!='seed'}
    s=", ".join(f"{k}={v}" for k,v in d.items()) or "(baseline)"
    if c['seed']!=0: s+=f", seed={c['seed']}"
    return s.replace(" ", " ")
print("| # | run | change vs baseline | test NELBO @50 (10 draws) | test rec / KL | train NELBO @50 | train rec / KL | best epoch (1-draw test curve) | wall s |")
print("|---|---|---|---|---|---|---|---|---|")
for i,r in enumerate(rows,1):
    c=r['cfg']
    tr=f"{r['test_rec']:.1f} / {r['test_kl']:.1f}" if 'test_rec' in r else "–"
    trr=f"{r['train_rec']:.1f} / {r['train_kl']:.1f}" if 'train_rec' in r else "–"
    note="" if c['epochs']==50 else f" (epochs={c['epochs']}; value at epoch {c['epochs']})"
    print(f"| {i} | {r['name']} | {diff(c)}{note} | {r['test_nelbo']:.2f} | {tr} | {r['train_nelbo']:.2f} | {trr} | {r['best_test_1draw']:.2f} @ {r['best_epoch_1draw']} | {r['secs']:.0f} |")
