import { describe, expect, it } from 'vitest';
import { toCsv } from './csv';

describe('toCsv', () => {
  it('neutralises cells a spreadsheet would run as formulas, and keeps numbers and plain text', () => {
    const csv = toCsv([
      { name: '=HYPERLINK("http://evil","x")', bytes: -5, note: '+1' },
      { name: '@SUM(A1)', bytes: 7, note: '\tcmd' },
      { name: 'vm01', bytes: 0, note: '-rf' },
    ], ['name', 'bytes', 'note']);
    expect(csv.split('\r\n')).toEqual([
      'name,bytes,note',
      `"'=HYPERLINK(""http://evil"",""x"")",-5,'+1`,
      `'@SUM(A1),7,'\tcmd`,
      `vm01,0,'-rf`,
      '',
    ]);
  });
});
