//! The grammar's mask at each step, computed on our side of the engine.
//!
//! mistral.rs applies a grammar lazily: it samples, and only when the token is not allowed
//! does it compute the mask and sample again. Drawing that way is exact, but the sampler
//! never learns the mask when the first draw is allowed — so it cannot say what
//! distribution the token was drawn from, which RL's sampling logprobs need. So the
//! embedded backend runs its own llguidance matcher over the same grammar and tokenizer
//! (built the way mistral.rs builds its own), masks the logits before drawing, and the
//! engine's check then always passes.

use std::sync::Arc;

use mistralrs::llguidance::{
    self,
    api::TopLevelGrammar,
    toktrie::{SimpleVob, TokTrie},
    Matcher, ParserFactory,
};

/// A parser factory for one tokenizer (built once per model: it indexes the vocabulary).
pub fn factory(tokenizer: &tokenizers::Tokenizer) -> Result<Arc<ParserFactory>, String> {
    // Special tokens must carry llguidance's marker byte so grammars can name them
    // (`<tool_call>`), as mistral.rs does for its own factory.
    let special: Vec<(u32, String)> = tokenizer
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, t)| t.special)
        .map(|(id, t)| (id, t.content))
        .collect();
    let bt = toktrie_hf_tokenizers::ByteTokenizer::from_tokenizer(tokenizer.clone())
        .map_err(|e| format!("indexing the tokenizer for grammars: {e}"))?;
    let info = bt.tokrx_info();
    let mut bytes = bt.token_bytes();
    for (id, content) in &special {
        let i = *id as usize;
        if i < bytes.len() && (bytes[i].is_empty() || bytes[i][0] != TokTrie::SPECIAL_TOKEN_MARKER)
        {
            let mut b = content.as_bytes().to_vec();
            b.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
            bytes[i] = b;
        }
    }
    let trie = TokTrie::from(&info, &bytes);
    let env = toktrie_hf_tokenizers::ByteTokenizerEnv {
        tokenizer: bt,
        tok_trie: trie,
    }
    .to_env();
    ParserFactory::new_simple(&env)
        .map(Arc::new)
        .map_err(|e| format!("grammar parser factory: {e}"))
}

/// One request's matcher: follows the generated ids and says what may come next.
pub struct GrammarMask {
    matcher: Matcher,
    /// Generated ids consumed so far.
    fed: usize,
}

impl GrammarMask {
    /// A matcher for a Lark grammar.
    pub fn new(factory: &ParserFactory, lark: &str) -> Result<Self, String> {
        let parser = factory
            .create_parser(TopLevelGrammar::from_lark(lark.to_owned()))
            .map_err(|e| format!("grammar: {e}"))?;
        Ok(Self {
            matcher: Matcher::new(Ok(parser)),
            fed: 0,
        })
    }

    /// Consumes the generated ids not yet seen, then returns the mask for the next token.
    pub fn allowed(&mut self, generated: &[u32]) -> Result<SimpleVob, String> {
        for &id in generated.get(self.fed..).unwrap_or(&[]) {
            if !self.matcher.is_stopped() {
                self.matcher
                    .consume_token(id)
                    .map_err(|e| format!("grammar rejected token {id}: {e}"))?;
            }
        }
        self.fed = generated.len();
        self.matcher
            .compute_mask_or_eos()
            .map_err(|e| format!("grammar mask: {e}"))
    }
}

/// `logits` with every token the mask does not allow at `-inf` (tokens past the tokenizer's
/// vocabulary, padding rows of the model's, are never allowed).
pub fn apply(logits: &[f32], mask: &SimpleVob, out: &mut Vec<f32>) {
    out.clear();
    out.extend(logits.iter().enumerate().map(|(i, &l)| {
        if i < mask.len() && mask.is_allowed(i as llguidance::toktrie::TokenId) {
            l
        } else {
            f32::NEG_INFINITY
        }
    }));
}
