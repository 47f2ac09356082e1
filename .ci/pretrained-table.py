# Rewrites the README's pretrained table from assets/pretrained/*/quality.ron (run after
# `.ci/pretrain install`): python3 .ci/pretrained-table.py
import re,os,glob
root=os.path.abspath(os.path.join(os.path.dirname(__file__),'..'))
rows=[]
for d in sorted(glob.glob(root+'/assets/pretrained/*/')):
    stem=os.path.basename(d.rstrip('/'))
    q=open(d+'quality.ron').read().split('\n')[1]
    get=lambda k: re.search(k+r': ([^,)]+)',q).group(1)
    eq=get('eq_w2'); eq='–' if eq=='None' else '%.3f'%float(eq[5:-1] if eq.startswith('Some(') else eq)
    name=re.search(r'name: "([^"]+)"',open(f'{root}/scenes/{stem}.ron').read()).group(1)
    size=sum(os.path.getsize(f) for f in glob.glob(d+'*'))
    steps=int(get('gradient_steps')); steps='–' if steps==0 else format(steps, ',').replace(',', ' ')
    if os.path.exists(f'{root}/.ci/pretrain-scenes/{stem}.ron'): name+=' †'
    rows.append(f"| `{stem}` | {name} | {steps} | {format(int(get('energy_evals')), ',').replace(',', ' ')} | {float(get('train_minutes')):.1f} | {float(get('energy_w2')):.3f} | {eq} | {size/1024:.0f} KB |")
table="| run | system | gradient steps | energy evaluations | minutes training (1 thread) | E-W2 (kT) | eq-W2 | size |\n|---|---|---|---|---|---|---|---|\n"+"\n".join(rows)
p=root+'/README.md'
s=open(p).read()
if 'PRETRAINED_TABLE' in s:
    s=s.replace('PRETRAINED_TABLE', '<!-- pretrained table -->\n'+table+'\n<!-- end pretrained table -->')
else:
    s=re.sub(r'<!-- pretrained table -->.*?<!-- end pretrained table -->', '<!-- pretrained table -->\n'+table+'\n<!-- end pretrained table -->', s, flags=re.S)
open(p,'w').write(s)
print(table)
