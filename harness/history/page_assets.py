"""The page's browser half: its inline stylesheet and script, and the cell classes both read.

harness.history.dashboard writes the HTML; what is here reaches the browser verbatim. A grid
cell's class is its status (``STATUS_CLASS``); the stylesheet colours it, the script names it in
the tooltip it writes when the cell is pointed at, and the legend shows the same names.
"""

from __future__ import annotations

from harness.history.html import Markup

STYLE = Markup("""
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#1b1f24}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 6px}h3{font-size:14px;margin:12px 0 4px}
.meta{color:#57606a}.legend span{display:inline-block;margin-right:10px}
.sw{display:inline-block;width:11px;height:11px;vertical-align:middle;margin-right:3px;border:1px solid #0002}
table.grid{border-collapse:collapse}
table.grid th,table.grid td{border:1px solid #d0d7de;padding:0}
table.grid thead th{font-weight:normal;font-size:10px;padding:2px;white-space:nowrap;vertical-align:bottom}
table.grid th.case{text-align:left;padding:1px 6px;font-weight:normal;white-space:nowrap;position:sticky;left:0;background:#fff}
table.grid tbody td{width:18px;height:18px;text-align:center;font-size:11px;line-height:18px;cursor:pointer}
table.grid tbody td.t{width:auto;cursor:default}
td a{display:block;color:inherit;text-decoration:none}
.p{background:#2da44e;color:#fff}.xf{background:#8fd19e}
.f{background:#cf222e;color:#fff}.e{background:#bc4c00;color:#fff}
.xp{background:#d4a72c}.nd{background:#a6d8b4;color:#1f2328}.s{background:#d0d7de}.n{background:#fff}
td.fb{outline:3px solid #000;outline-offset:-3px}
.flag{font-size:11px;border-radius:3px;padding:0 4px;margin-left:4px}
.flaky{background:#fff8c5;border:1px solid #d4a72c}.quarantined{background:#ddf4ff;border:1px solid #54aeff}.new{background:#ffebe9;border:1px solid #cf222e}
.drift{background:#ddf4ff;border:1px solid #54aeff}
ul.items{margin:4px 0 8px;padding-left:18px}ul.items li{margin:2px 0}
pre{background:#f6f8fa;padding:6px;margin:4px 0;max-width:100ch;overflow:auto;font-size:11px}
table.parity,table.durations{border-collapse:collapse;font-size:11px}
table.parity td,table.parity th,table.durations td,table.durations th{border:1px solid #d0d7de;padding:1px 4px;text-align:right;white-space:nowrap}
table.parity td.mm{background:#ffebe9;font-weight:bold}
.spark{vertical-align:middle}tr.hidden{display:none}
#filter{margin:8px 0}
""")

# Filter rows by case name, or to the rows with a problem; draw each row's timing sparkline from
# its data-t; give a plain cell its tooltip and log link when pointed at (a year's grid has tens of
# thousands of cells: writing each one's text into the page would make it megabytes). Guards
# every lookup: no errors.
SCRIPT = Markup("""
(function(){
  var NAMES={p:'passed',xf:'xfailed',f:'failed',e:'error',xp:'xpassed',s:'skipped',n:'not run'};
  var SVG='http://www.w3.org/2000/svg';
  function spark(td,values){
    var w=90,h=18,nums=[],i,top=0,step,segs=[],cur=[];
    for(i=0;i<values.length;i++){var v=parseFloat(values[i]);nums.push(isNaN(v)?null:v);
      if(!isNaN(v)&&v>top)top=v;}
    if(nums.filter(function(v){return v!==null;}).length<2)return;
    top=top||1;step=w/Math.max(nums.length-1,1);
    for(i=0;i<nums.length;i++){
      if(nums[i]===null){if(cur.length)segs.push(cur);cur=[];continue;}
      cur.push((i*step).toFixed(1)+','+(h-1-(nums[i]/top)*(h-2)).toFixed(1));
    }
    if(cur.length)segs.push(cur);
    var svg=document.createElementNS(SVG,'svg');
    svg.setAttribute('class','spark');svg.setAttribute('width',w);svg.setAttribute('height',h);
    svg.setAttribute('viewBox','0 0 '+w+' '+h);
    var title=document.createElementNS(SVG,'title');
    title.textContent='total time, last '+nums.length+' nights: max '+top.toFixed(1)+'s';
    svg.appendChild(title);
    for(i=0;i<segs.length;i++){var pl=document.createElementNS(SVG,'polyline');
      pl.setAttribute('points',segs[i].join(' '));pl.setAttribute('fill','none');
      pl.setAttribute('stroke','#57606a');pl.setAttribute('stroke-width','1');svg.appendChild(pl);}
    td.appendChild(svg);
  }
  function cellInfo(td){
    var tr=td.parentNode,table=tr&&tr.closest?tr.closest('table.grid'):null;
    if(!table||!tr.classList.contains('line')||td.tagName!=='TD'||td.classList.contains('t'))return null;
    var head=table.tHead&&table.tHead.rows[0]&&table.tHead.rows[0].cells[td.cellIndex];
    if(!head)return null;
    var times=(tr.getAttribute('data-t')||'').split(' '),t=times[td.cellIndex-2];
    return {tr:tr,table:table,head:head,time:(t&&t!=='-')?t+'s':'-'};
  }
  function describe(td){
    var c=cellInfo(td);if(!c||td.title)return c;
    var d=c.head.dataset,status=NAMES[td.className]||td.className;
    td.title=status==='not run'?'not run':(c.tr.getAttribute('data-case')+' on '+c.table.getAttribute('data-platform')+
      ', '+d.run+' ('+d.label+', commit '+d.commit+'): '+status+', '+c.time);
    return c;
  }
  var grids=document.querySelectorAll('table.grid');
  for(var g=0;g<grids.length;g++){
    grids[g].addEventListener('mouseover',function(ev){if(ev.target.tagName==='TD')describe(ev.target);});
    grids[g].addEventListener('click',function(ev){
      var td=ev.target;if(td.tagName!=='TD'||td.querySelector('a'))return;
      var c=describe(td);if(!c||td.className==='n'||!c.head.dataset.dir)return;
      window.location.href=c.head.dataset.dir+'/'+encodeURIComponent(c.tr.getAttribute('data-case'))+'.log';
    });
  }
  var lines=document.querySelectorAll('tr.line');
  for(var i=0;i<lines.length;i++){var td=lines[i].querySelector('td.t');
    if(td)spark(td,(lines[i].getAttribute('data-t')||'').split(' '));}
  var box=document.getElementById('filter-text'),only=document.getElementById('filter-problems');
  if(box&&only){
    var apply=function(){
      var text=box.value.toLowerCase(),rows=document.querySelectorAll('tr.line');
      for(var i=0;i<rows.length;i++){
        var r=rows[i],name=(r.getAttribute('data-case')||'').toLowerCase();
        var hide=(text&&name.indexOf(text)<0)||(only.checked&&!r.classList.contains('problem'));
        r.classList.toggle('hidden',!!hide);
      }
    };
    box.addEventListener('input',apply);only.addEventListener('change',apply);
  }
  document.documentElement.setAttribute('data-js','ok');  // reached only if nothing threw
})();
""")

# A cell's class names its status; the script and the legend read the same names.
STATUS_CLASS = {"passed": "p", "xfailed": "xf", "failed": "f", "error": "e", "xpassed": "xp",
                "skipped": "s"}
NOT_RUN = "n"
