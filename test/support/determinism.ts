/**
 * A static determinism check for model code. Every replica runs the models on the same events and must reach the
 * same state, so model code may not read the clock, draw its own random numbers, schedule timers, touch the host
 * (DOM, network, process) or call functions whose results depend on the machine's locale.
 */
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

export interface Violation {
  file: string;
  line: number;
  column: number;
  name: string;
  reason: string;
}

export interface CheckResult {
  /** Every file of the transitive closure, in the order visited. */
  files: string[];
  violations: Violation[];
}

const root = fileURLToPath(new URL("../..", import.meta.url));

export const MODEL_ENTRY_FILES: string[] = [join(root, "component", "chat-model.ts")];

const reasons = (names: string[], reason: string): [string, string][] => names.map((name) => [name, reason]);

const FORBIDDEN_GLOBALS = new Map<string, string>([
  ...reasons(["Date", "performance"], "use this.now()"),
  ...reasons(["setTimeout", "setInterval", "setImmediate", "queueMicrotask", "requestAnimationFrame", "requestIdleCallback"], "use this.future(ms)"),
  ...reasons(
    ["document", "window", "navigator", "location", "localStorage", "sessionStorage", "indexedDB", "HTMLElement", "customElements"],
    "model code must not touch the DOM",
  ),
  ...reasons(["fetch", "XMLHttpRequest", "WebSocket", "EventSource", "BroadcastChannel"], "model code must not use the network"),
  ...reasons(["crypto"], "use this.random()"),
  ...reasons(["process"], "model code must not depend on the host process"),
  ...reasons(["globalThis", "self"], "model code must not reach the global object"),
  ...reasons(["eval", "Function"], "model code must not compile code at run time"),
  ...reasons(["WeakRef", "FinalizationRegistry"], "result depends on when the garbage collector runs"),
  ...reasons(["Intl"], "result depends on the machine's locale"),
]);

const LOCALE_METHODS = new Set(["toLocaleString", "toLocaleDateString", "toLocaleTimeString", "localeCompare", "toLocaleUpperCase", "toLocaleLowerCase"]);
const LOCALE_REASON = "result depends on the machine's locale";

/** Every forbidden use in one file's source text. */
export function findForbiddenUses(fileName: string, sourceText: string): Violation[] {
  return violationsIn(parse(fileName, sourceText));
}

/** Checks the entry files and every project module they import at run time, each once. */
export async function checkModelCode(entryFiles: string[]): Promise<CheckResult> {
  const visited = new Set<string>();
  const violations: Violation[] = [];
  const pending = entryFiles.map((file) => resolve(file));
  for (let file = pending.shift(); file !== undefined; file = pending.shift()) {
    if (visited.has(file)) continue;
    visited.add(file);
    const sourceFile = parse(file, await readFile(file, "utf8"));
    violations.push(...violationsIn(sourceFile));
    const imported = runtimeModuleSpecifiers(sourceFile).filter(isRelative);
    pending.push(...imported.map((specifier) => resolve(dirname(file), specifier.replace(/\.js$/, ".ts"))));
  }
  return { files: [...visited], violations };
}

function parse(fileName: string, sourceText: string): ts.SourceFile {
  return ts.createSourceFile(fileName, sourceText, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
}

function violationsIn(sourceFile: ts.SourceFile): Violation[] {
  const violations: Violation[] = [];
  const report = (node: ts.Node, name: string, reason: string) => {
    const { line, character } = sourceFile.getLineAndCharacterOfPosition(node.getStart(sourceFile));
    violations.push({ file: sourceFile.fileName, line: line + 1, column: character + 1, name, reason });
  };
  const visit = (node: ts.Node): void => {
    if (isTypeOnly(node)) return;
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      const specifier = moduleSpecifier(node);
      if (specifier !== undefined && !isRelative(specifier)) report(node, specifier, "model code may import only project model modules");
      // Import and export specifiers name bindings; they do not use them.
      return;
    }
    const use = forbiddenUse(node);
    if (use !== undefined) report(use.at, use.name, use.reason);
    ts.forEachChild(node, visit);
  };
  visit(sourceFile);
  return violations;
}

interface ForbiddenUse {
  /** Where to point: the forbidden name itself. */
  at: ts.Node;
  name: string;
  reason: string;
}

function forbiddenUse(node: ts.Node): ForbiddenUse | undefined {
  if (ts.isIdentifier(node)) {
    const reason = FORBIDDEN_GLOBALS.get(node.text);
    return reason !== undefined && isGlobalReference(node) ? { at: node, name: node.text, reason } : undefined;
  }
  if (!(ts.isPropertyAccessExpression(node) || ts.isElementAccessExpression(node))) return undefined;
  const member = memberName(node);
  if (member === undefined) return undefined;
  if (LOCALE_METHODS.has(member)) return { at: memberNode(node), name: member, reason: LOCALE_REASON };
  if (member === "random" && ts.isIdentifier(node.expression) && node.expression.text === "Math" && isGlobalReference(node.expression)) {
    return { at: node, name: "Math.random", reason: "use this.random()" };
  }
  return undefined;
}

function memberNode(node: ts.PropertyAccessExpression | ts.ElementAccessExpression): ts.Node {
  return ts.isPropertyAccessExpression(node) ? node.name : node.argumentExpression;
}

/** The member's name, when it is written out: `x.name` or `x["name"]`. */
function memberName(node: ts.PropertyAccessExpression | ts.ElementAccessExpression): string | undefined {
  if (ts.isPropertyAccessExpression(node)) return ts.isIdentifier(node.name) ? node.name.text : undefined;
  return ts.isStringLiteralLike(node.argumentExpression) ? node.argumentExpression.text : undefined;
}

/** Type positions, type declarations and type-only imports and exports produce no run-time code. */
function isTypeOnly(node: ts.Node): boolean {
  if (ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node)) return true;
  if (ts.isImportDeclaration(node)) return node.importClause?.isTypeOnly ?? false;
  if (ts.isExportDeclaration(node)) return node.isTypeOnly;
  if (ts.isExpressionWithTypeArguments(node)) return !isClassExtends(node);
  return ts.isTypeNode(node);
}

/** `class A extends B` evaluates `B`; `implements` does not. */
function isClassExtends(node: ts.ExpressionWithTypeArguments): boolean {
  const clause = node.parent;
  return ts.isHeritageClause(clause) && clause.token === ts.SyntaxKind.ExtendsKeyword && ts.isClassLike(clause.parent);
}

function moduleSpecifier(node: ts.ImportDeclaration | ts.ExportDeclaration): string | undefined {
  const specifier = node.moduleSpecifier;
  return specifier !== undefined && ts.isStringLiteral(specifier) ? specifier.text : undefined;
}

/**
 * Specifiers of the modules loaded when this file runs. Under `verbatimModuleSyntax` only `import type` and
 * `export type` declarations are erased; `import { type A } from` still loads its module.
 */
function runtimeModuleSpecifiers(sourceFile: ts.SourceFile): string[] {
  return sourceFile.statements.flatMap((statement) => {
    if (!(ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) || isTypeOnly(statement)) return [];
    return moduleSpecifier(statement) ?? [];
  });
}

function isRelative(specifier: string): boolean {
  return specifier.startsWith(".");
}

/** An identifier used as a value that no enclosing scope declares, so it refers to the global of that name. */
function isGlobalReference(node: ts.Identifier): boolean {
  return !isNameOnly(node) && !isDeclaredAbove(node);
}

/** Property names, declaration names and labels: identifiers that do not read a variable. */
function isNameOnly(node: ts.Identifier): boolean {
  const parent = node.parent as ts.Node & { name?: ts.Node; propertyName?: ts.Node; label?: ts.Node };
  // `{ fetch }` is both a property name and a use of the variable.
  if (parent.name === node) return !ts.isShorthandPropertyAssignment(parent);
  return parent.propertyName === node || parent.label === node;
}

function isDeclaredAbove(node: ts.Identifier): boolean {
  for (let scope = node.parent; scope !== undefined; scope = scope.parent) {
    if (namesDeclaredIn(scope).includes(node.text)) return true;
  }
  return false;
}

/** Names a node brings into scope for its descendants. `var` hoisting out of nested blocks is not modelled. */
function namesDeclaredIn(scope: ts.Node): string[] {
  if (ts.isSourceFile(scope) || ts.isBlock(scope) || ts.isModuleBlock(scope)) return scope.statements.flatMap(statementNames);
  if (ts.isCaseBlock(scope)) return scope.clauses.flatMap((clause) => clause.statements.flatMap(statementNames));
  if (ts.isCatchClause(scope)) return scope.variableDeclaration ? bindingNames(scope.variableDeclaration.name) : [];
  if (ts.isForStatement(scope) || ts.isForInStatement(scope) || ts.isForOfStatement(scope)) {
    const initializer = scope.initializer;
    return initializer !== undefined && ts.isVariableDeclarationList(initializer) ? initializer.declarations.flatMap((d) => bindingNames(d.name)) : [];
  }
  const names = ts.isFunctionLike(scope) ? scope.parameters.flatMap((parameter) => bindingNames(parameter.name)) : [];
  // A function or class expression's own name is visible only inside it.
  if ((ts.isFunctionExpression(scope) || ts.isClassExpression(scope)) && scope.name !== undefined) names.push(scope.name.text);
  return names;
}

function statementNames(statement: ts.Statement): string[] {
  if (ts.isVariableStatement(statement)) return statement.declarationList.declarations.flatMap((d) => bindingNames(d.name));
  if (ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement)) return statement.name ? [statement.name.text] : [];
  if (ts.isEnumDeclaration(statement)) return [statement.name.text];
  if (ts.isImportDeclaration(statement) && !isTypeOnly(statement)) return importedNames(statement.importClause);
  return [];
}

function importedNames(clause: ts.ImportClause | undefined): string[] {
  if (clause === undefined) return [];
  const names = clause.name ? [clause.name.text] : [];
  const bindings = clause.namedBindings;
  if (bindings === undefined) return names;
  if (ts.isNamespaceImport(bindings)) return [...names, bindings.name.text];
  return [...names, ...bindings.elements.map((element) => element.name.text)];
}

function bindingNames(name: ts.BindingName): string[] {
  if (ts.isIdentifier(name)) return [name.text];
  return name.elements.flatMap((element) => (ts.isBindingElement(element) ? bindingNames(element.name) : []));
}
