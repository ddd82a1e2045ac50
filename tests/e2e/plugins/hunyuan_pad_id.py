"""For the HunyuanOCR e2e only: the one processor attribute ms-swift 4.6.0's ``HunYuanVLTemplate`` reads and
transformers 5.19's ``HunYuanVLProcessor`` lacks (``pad_id``; the processor Tencent first published set it to the
pad token's id), so that the run gets past the encode to what comes after it. Not a fix swift-ext ships."""
import transformers

transformers.HunYuanVLProcessor.pad_id = property(lambda self: self.tokenizer.pad_token_id)
