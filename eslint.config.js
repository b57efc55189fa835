import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', '.bench-build/**', 'node_modules/**', 'coverage/**', 'demo/public/**'] }),
]
